/*
 * memory.c: what memory the model needs and where everything lives (layer.h), laid out twice:
 * a dry run with NULL pointers sizes the arenas, they are committed once, and the same layout
 * runs again with real pointers. Nothing is allocated later, in forward or backward.
 *
 *   params arena  parameter values (st_param_storage_numel floats each): frozen ones and BN
 *                 moving statistics first, then the trainable ones as one slice mirrored by the
 *                 grads arena (what the optimizer walks); then the folded conv+BN copies.
 *   grads arena   gradients of the trainable parameters; empty in an inference model.
 *   acts arena    the input, "kept" outputs (what backward reads, the delimiting layer, the
 *                 head) in blocks of their own (half a block for a bf16 one: step.bf16_out),
 *                 every other output in a few reused slots; in a training model also the
 *                 gradient slots, the head gradients (d_features, d_embedding, d_logits), the
 *                 saved BN statistics and the backward scratch.
 * A model built for inference keeps nothing for backward and gets no gradient memory at all.
 */
#include <stdlib.h>
#include <string.h>

#include "../../kernels/check.h"
#include "layer.h"

/* Reuse plan of the activations that need not survive the step that reads them last:
 * uniform blocks ("slots") handed out and returned in execution order. */
typedef struct slot_plan {
    int *slot_of;      /* per layer: slot index of its output, -1 when kept or absent */
    int *inplace_of;   /* per layer: the add that overwrites its output in place, -1 none */
    int n_slots;
    size_t slot_numel;
    int *gslot_of;     /* per layer: gradient slot, -1 when dedicated or absent */
    int n_gslots;
    size_t gslot_numel;
    size_t scratch_numel; /* backward: one extra gradient-sized buffer (accumulation, unused dx) */
} slot_plan;

static int is_head(const st_layer *l) {
    return l->kind == ST_LAYER_GPOOL || l->kind == ST_LAYER_DENSE || l->kind == ST_LAYER_L2NORM;
}

/* Which forward values the backward of a step reads (the layer kind files): its inputs (x)
 * and its output (y). Only these must outlive the forward pass; everything else goes to reused
 * slots.
 * A BN without ReLU feeding a residual add is the big case: neither the BN's backward (x only)
 * nor the add's (y only, for the ReLU mask) reads it, and it is about a quarter of a ResNet's
 * activations. */
static void backward_reads(const st_layer *l, int *reads_x, int *reads_y) {
    const st_step *s = &l->step;
    switch (l->kind) {
    case ST_LAYER_CONV: /* x for the filter gradient; the data gradient needs only weights */
        *reads_x = s->trains;
        *reads_y = 0;
        break;
    case ST_LAYER_BN: /* x for the normalised values; y for the fused ReLU's mask */
        *reads_x = 1;
        *reads_y = s->relu;
        break;
    case ST_LAYER_ADD: /* the gradient passes through unchanged but for the ReLU's mask */
        *reads_x = 0;
        *reads_y = s->relu;
        break;
    case ST_LAYER_DENSE:
        *reads_x = 1;
        *reads_y = 0;
        break;
    case ST_LAYER_L2NORM:
        *reads_x = 0;
        *reads_y = 1;
        break;
    default: /* pools: the argmax / the pooled value */
        *reads_x = *reads_y = 1;
        break;
    }
}

static void mark_kept(st_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        const st_step *s = &l->step;
        st_layer *out = &m->layers[s->last];
        if (l->kind == ST_LAYER_INPUT || is_head(l) || s->last == m->freeze_index) out->kept = 1;
        if (!s->needs_grad) continue;
        int reads_x, reads_y;
        backward_reads(l, &reads_x, &reads_y);
        if (reads_y) out->kept = 1;
        for (int k = 0; k < s->n_in && reads_x; k++) m->layers[s->in_mat[k]].kept = 1;
    }
}

static int slot_take(int *free_list, int *n_free, int *n_slots) {
    return *n_free ? free_list[--*n_free] : (*n_slots)++;
}

/* A residual add writes its sum over one of its inputs: one that is not kept, has no other
 * reader and so dies at the add. That input is then produced straight into the add's output
 * buffer (its kept block, or its slot, which the add inherits): one buffer less per block, the
 * last BN output of a residual branch in training, its last conv output in inference. */
static void plan_inplace_adds(const st_model *m, slot_plan *sp) {
    int *readers = ST_CALLOC((size_t)m->n_layers, sizeof(int));
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i) continue;
        for (int k = 0; k < s->n_in; k++) readers[s->in_mat[k]]++;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i || m->layers[i].kind != ST_LAYER_ADD) continue;
        for (int k = 0; k < s->n_in; k++) {
            int in = s->in_mat[k];
            if (m->layers[in].kept || readers[in] != 1) continue;
            sp->inplace_of[in] = s->last;
            break;
        }
    }
    free(readers);
}

/* Forward: an output that is not kept takes a slot at its step and returns it after the step
 * that reads it last; an add's output inherits the slot of the input it overwrites, and that
 * input takes none when the add's output is kept. */
static void plan_forward_slots(const st_model *m, slot_plan *sp, int *free_list) {
    int n = m->n_layers, n_free = 0;
    int *last_use = ST_MALLOC((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) last_use[i] = -1;
    for (int i = 0; i < n; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i) continue;
        for (int k = 0; k < s->n_in; k++) last_use[s->in_mat[k]] = i;
    }
    for (int i = 0; i < n; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        int out = l->step.last, overwritten = -1;
        for (int k = 0; k < l->step.n_in; k++)
            if (sp->inplace_of[l->step.in_mat[k]] == out) overwritten = l->step.in_mat[k];
        int into_kept = sp->inplace_of[out] >= 0 && m->layers[sp->inplace_of[out]].kept;
        if (overwritten >= 0 && sp->slot_of[overwritten] >= 0) {
            sp->slot_of[out] = sp->slot_of[overwritten];
        } else if (!m->layers[out].kept && !into_kept) {
            sp->slot_of[out] = slot_take(free_list, &n_free, &sp->n_slots);
            size_t numel = st_numel(m->layers[out].out);
            if (numel > sp->slot_numel) sp->slot_numel = numel;
        }
        for (int k = 0; k < l->step.n_in; k++) {
            int in = l->step.in_mat[k];
            if (sp->slot_of[in] >= 0 && last_use[in] == i && in != overwritten)
                free_list[n_free++] = sp->slot_of[in];
        }
        if (sp->slot_of[out] >= 0 && last_use[out] < 0) free_list[n_free++] = sp->slot_of[out];
    }
    free(last_use);
}

/* Per layer: the step whose backward reads its output's gradient last (the lowest index): its
 * producer, or a BN that reads a residual add's gradient through it (step.grad_via_add). */
static int *grad_last_readers(const st_model *m) {
    int *reader = ST_MALLOC((size_t)m->n_layers * sizeof(int));
    for (int i = 0; i < m->n_layers; i++) reader[i] = m->layers[i].exec;
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i || !s->needs_grad || s->grad_via_add < 0) continue;
        int add_out = m->layers[s->grad_via_add].step.last;
        if (i < reader[add_out]) reader[add_out] = i;
    }
    return reader;
}

/* Backward: the gradient of a backbone output lives from its first consumer's backward (in
 * reverse order) to its last reader's; the first writer overwrites, later ones accumulate. An
 * add's input read through the add (step.grad_via_add) gets none. Also sizes the scratch. */
static void plan_grad_slots(st_model *m, slot_plan *sp, int *free_list) {
    int n_free = 0;
    int *last_reader = grad_last_readers(m);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        st_layer *l = &m->layers[i];
        if (l->exec != i || !l->step.needs_grad) continue;
        size_t out_numel = st_numel(m->layers[l->step.last].out);
        if (out_numel > sp->scratch_numel) sp->scratch_numel = out_numel;
        for (int k = 0; k < l->step.n_in; k++) {
            int in = l->step.in_mat[k];
            st_layer *src = &m->layers[m->layers[in].exec];
            size_t numel = st_numel(m->layers[in].out);
            if (numel > sp->scratch_numel) sp->scratch_numel = numel;
            if (!src->step.needs_grad) continue;
            l->step.accumulate[k] = 0;
            /* a head has its dedicated gradient; a BN read through this add reads the add's */
            if (is_head(src) || src->step.grad_via_add == i) continue;
            if (sp->gslot_of[in] < 0) {
                sp->gslot_of[in] = slot_take(free_list, &n_free, &sp->n_gslots);
                if (numel > sp->gslot_numel) sp->gslot_numel = numel;
            } else {
                l->step.accumulate[k] = 1;
            }
        }
        int outs[2] = {l->step.last, l->step.grad_via_add >= 0
                                         ? m->layers[l->step.grad_via_add].step.last : -1};
        for (int j = 0; j < 2; j++)
            if (outs[j] >= 0 && last_reader[outs[j]] == i && sp->gslot_of[outs[j]] >= 0)
                free_list[n_free++] = sp->gslot_of[outs[j]];
    }
    free(last_reader);
}

static void plan_slots(st_model *m, slot_plan *sp) {
    int n = m->n_layers;
    sp->slot_of = ST_MALLOC((size_t)n * sizeof(int));
    sp->inplace_of = ST_MALLOC((size_t)n * sizeof(int));
    sp->gslot_of = ST_MALLOC((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) sp->slot_of[i] = sp->inplace_of[i] = sp->gslot_of[i] = -1;
    int *free_list = ST_MALLOC((size_t)n * sizeof(int));
    plan_inplace_adds(m, sp);
    plan_forward_slots(m, sp, free_list);
    plan_grad_slots(m, sp, free_list);
    free(free_list);
}

static float *take_tensor(st_arena *a, st_tensor *t) { return t->data = st_arena_take(a, st_numel(*t)); }

/* Floats of layer i's own block: a bf16 output (step.bf16_out) takes half. */
static size_t block_numel(const st_model *m, int i) {
    const size_t numel = st_numel(m->layers[i].out);
    return m->layers[m->layers[i].exec].step.bf16_out ? (numel + 1) / 2 : numel;
}

/* Parameter values: frozen ones and moving statistics first, then the trainable ones as one
 * slice mirrored by the gradients. */
static void layout_params(st_model *m) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n_params; i++) {
            st_param *p = &m->params[i];
            if (p->trainable != pass) continue;
            size_t numel = st_param_storage_numel(m, p);
            p->value = st_arena_take(&m->params_arena, numel);
            if (p->trainable) p->grad = st_arena_take(&m->grads_arena, numel);
        }
}

/* Materialized outputs: kept ones get their own block, the others a slot or the kept block of
 * the add that overwrites them; gradients their slot, or the gradient of the add a BN is read
 * through (step.grad_via_add: the add writes no gradient for that BN). */
static void layout_outputs(st_model *m, const slot_plan *sp) {
    st_arena *acts = &m->acts_arena;
    m->input = m->layers[0].out;
    m->layers[0].out.data = take_tensor(acts, &m->input);
    float **slots = ST_CALLOC((size_t)sp->n_slots + (size_t)sp->n_gslots + 1, sizeof(float *));
    float **gslots = slots + sp->n_slots;
    for (int k = 0; k < sp->n_slots; k++) slots[k] = st_arena_take(acts, sp->slot_numel);
    for (int k = 0; k < sp->n_gslots; k++) gslots[k] = st_arena_take(acts, sp->gslot_numel);

    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        l->grad = NULL;
        if (i > 0) l->out.data = NULL;
        if (i > 0 && l->materialized && l->kept)
            l->out.data = st_arena_take(acts, block_numel(m, i));
        if (i > 0 && l->materialized && sp->slot_of[i] >= 0) l->out.data = slots[sp->slot_of[i]];
        if (l->materialized && sp->gslot_of[i] >= 0) l->grad = gslots[sp->gslot_of[i]];
    }
    for (int i = 0; i < m->n_layers; i++) /* the add comes later than what it overwrites */
        if (!m->layers[i].out.data && sp->inplace_of[i] >= 0)
            m->layers[i].out.data = m->layers[sp->inplace_of[i]].out.data;
    for (int i = 0; i < m->n_layers; i++) { /* a BN read through its add shares its gradient */
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec == i && s->needs_grad && s->grad_via_add >= 0)
            m->layers[s->last].grad = m->layers[m->layers[s->grad_via_add].step.last].grad;
    }
    free(slots);
}

/* Per-step parameter views, folded copies (params arena) and saved statistics. */
static void layout_steps(st_model *m) {
    st_arena *acts = &m->acts_arena;
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        st_step *s = &l->step;
        const st_param *p = &m->params[l->first_param];
        s->w = s->b = s->gamma = s->beta = s->mean = s->var = NULL;
        s->dw = s->db = s->dgamma = s->dbeta = NULL;
        switch (l->kind) {
        case ST_LAYER_CONV:
        case ST_LAYER_DENSE:
            s->w = p[0].value;
            s->dw = p[0].grad;
            if (l->n_params > 1) {
                s->b = p[1].value;
                s->db = p[1].grad;
            }
            if (s->fold_bn >= 0) {
                const st_param *q = &m->params[m->layers[s->fold_bn].first_param];
                s->gamma = q[0].value;
                s->beta = q[1].value;
                s->mean = q[2].value;
                s->var = q[3].value;
                s->w_fold = st_arena_take(&m->params_arena, st_param_storage_numel(m, &p[0]));
                s->b_fold = st_arena_take(&m->params_arena, (size_t)l->geom.filters);
            }
            break;
        case ST_LAYER_BN:
            s->gamma = p[0].value;
            s->beta = p[1].value;
            s->mean = p[2].value;
            s->var = p[3].value;
            s->dgamma = p[0].grad;
            s->dbeta = p[1].grad;
            if (s->trains) {
                s->save_mean = st_arena_take(acts, (size_t)l->out.c);
                s->save_rstd = st_arena_take(acts, (size_t)l->out.c);
            }
            break;
        case ST_LAYER_L2NORM:
            s->norms = st_arena_take(acts, (size_t)l->out.n);
            break;
        default:
            break;
        }
    }
}

/* Head tensors, the gradients the loss writes (model.h: st_model_backward) and the backward
 * scratch. */
static void layout_head(st_model *m, const slot_plan *sp) {
    const st_model_config *cfg = &m->config;
    st_arena *acts = &m->acts_arena;
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (strcmp(l->name, "avg_pool") == 0) m->features = l->out;
        if (strcmp(l->name, "embedding_norm") == 0) m->embedding = l->out;
        if (strcmp(l->name, "predictions") == 0) m->logits = l->out;
    }
    m->feature_dim = m->features.c;
    m->d_features = m->features;
    m->d_embedding = m->embedding;
    m->d_logits = m->logits;
    m->d_features.data = m->d_embedding.data = m->d_logits.data = NULL;
    if (cfg->training) {
        take_tensor(acts, &m->d_features);
        if (cfg->embed_dim > 0) take_tensor(acts, &m->d_embedding);
        if (cfg->num_classes > 0) take_tensor(acts, &m->d_logits);
        for (int i = 0; i < m->n_layers; i++) {
            st_layer *l = &m->layers[i];
            if (!l->materialized || !is_head(&m->layers[l->exec])) continue;
            if (strcmp(l->name, "avg_pool") == 0) l->grad = m->d_features.data;
            else if (strcmp(l->name, "embedding_norm") == 0) l->grad = m->d_embedding.data;
            else if (strcmp(l->name, "predictions") == 0) l->grad = m->d_logits.data;
            else l->grad = st_arena_take(acts, st_numel(l->out));
        }
        float *scratch = st_arena_take(acts, sp->scratch_numel);
        for (int i = 0; i < m->n_layers; i++) m->layers[i].step.scratch = scratch;
    }
}

/* One layout pass; run once while sizing (NULL pointers) and once after commit. */
static void layout(st_model *m, const slot_plan *sp) {
    st_arena_rewind(&m->params_arena);
    st_arena_rewind(&m->grads_arena);
    st_arena_rewind(&m->acts_arena);
    layout_params(m);
    layout_outputs(m, sp);
    layout_steps(m);
    layout_head(m, sp);
}

static void commit_arena(st_arena *a, st_backend *be) {
    if (a->used) st_arena_commit(a, be);
}

void st_model_layout_memory(st_model *m) {
    mark_kept(m);
    slot_plan sp = {0};
    plan_slots(m, &sp);
    layout(m, &sp); /* sizing */
    commit_arena(&m->params_arena, m->backend);
    commit_arena(&m->grads_arena, m->backend);
    commit_arena(&m->acts_arena, m->backend);
    layout(m, &sp); /* real pointers */
    free(sp.slot_of);
    free(sp.inplace_of);
    free(sp.gslot_of);
}
