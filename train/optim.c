/*
 * optim.c: learning-rate schedules and the optimizer over a model's parameter tensors
 * (contract and formulas in train/optim.h). The per-element update is the backend's
 * optim_step (kernels/math/optim.h), after the backend's optim_grad_norm has decided clipping and
 * skipping on the device; this file decides groups and state layout, and keeps the counters.
 */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"

/* ---- schedules ------------------------------------------------------------------------ */

st_lr_schedule st_lr_schedule_default(st_lr_kind kind, double base_lr) {
    st_lr_schedule s = {0};
    s.kind = kind;
    s.base_lr = base_lr;
    s.step_size = 1;
    s.gamma = 0.1;
    s.warmup = 0;
    s.total = 1;
    s.min_lr = 0.0;
    s.mode_max = 0;
    s.patience = 10;
    s.factor = 0.1;
    s.threshold = 1e-4;
    s.cooldown = 0;
    return s;
}

/* W of the cosine warmup: a fractional warmup warms up for the whole tick it starts. */
static int warmup_ticks(const st_lr_schedule *s) { return (int)ceil(s->warmup); }

int st_lr_schedule_validate(const st_lr_schedule *s, const char *what) {
    if (!(s->base_lr > 0) || !isfinite(s->base_lr))
        return st_error_set("%s: learning rate %g must be > 0", what, s->base_lr);
    switch (s->kind) {
    case ST_LR_CONSTANT: return 0;
    case ST_LR_STEP:
        if (s->step_size < 1)
            return st_error_set("%s: step_size %d must be >= 1", what, s->step_size);
        if (!(s->gamma > 0 && s->gamma <= 1))
            return st_error_set("%s: gamma %g must be in (0, 1]", what, s->gamma);
        return 0;
    case ST_LR_COSINE:
        if (!(s->warmup >= 0) || s->total <= warmup_ticks(s))
            return st_error_set("%s: cosine needs 0 <= warmup (%g) < total (%d)", what, s->warmup,
                                s->total);
        if (!(s->min_lr >= 0 && s->min_lr <= s->base_lr))
            return st_error_set("%s: min_lr %g must be in [0, lr]", what, s->min_lr);
        return 0;
    case ST_LR_PLATEAU:
        if (!(s->factor > 0 && s->factor < 1))
            return st_error_set("%s: factor %g must be in (0, 1)", what, s->factor);
        if (s->patience < 0 || s->cooldown < 0 || !(s->threshold >= 0) || !(s->min_lr >= 0))
            return st_error_set("%s: patience, cooldown, threshold and min_lr must be >= 0", what);
        return 0;
    }
    return st_error_set("%s: unknown schedule kind %d", what, (int)s->kind);
}

double st_lr_at(const st_lr_schedule *s, long tick) {
    ST_CHECK(tick >= 0, "st_lr_at: negative tick %ld", tick);
    switch (s->kind) {
    case ST_LR_CONSTANT:
    case ST_LR_PLATEAU: return s->base_lr;
    case ST_LR_STEP: return s->base_lr * pow(s->gamma, (double)(tick / s->step_size));
    case ST_LR_COSINE: {
        long w = warmup_ticks(s);
        if (tick < w) return s->base_lr * (double)(tick + 1) / (double)(w + 1);
        long span = s->total - w;
        long u = tick - w < span ? tick - w : span;
        return s->min_lr +
               (s->base_lr - s->min_lr) * (1.0 + cos(M_PI * (double)u / (double)span)) / 2.0;
    }
    }
    ST_FAIL("st_lr_at: unknown schedule kind %d", (int)s->kind);
}

void st_plateau_init(st_plateau *p, const st_lr_schedule *s) {
    p->lr = s->base_lr;
    p->best = s->mode_max ? -INFINITY : INFINITY;
    p->num_bad = 0;
    p->cooldown_left = 0;
}

/* torch's _is_better with threshold_mode 'rel'. */
static int plateau_is_better(const st_lr_schedule *s, double metric, double best) {
    if (s->mode_max) return metric > best * (1.0 + s->threshold);
    return metric < best * (1.0 - s->threshold);
}

double st_plateau_update(st_plateau *p, const st_lr_schedule *s, double metric) {
    if (plateau_is_better(s, metric, p->best)) {
        p->best = metric;
        p->num_bad = 0;
    } else {
        p->num_bad++;
    }
    if (p->cooldown_left > 0) {
        p->cooldown_left--;
        p->num_bad = 0; /* bad ticks during cooldown do not count */
    }
    if (p->num_bad > s->patience) {
        double reduced = fmax(p->lr * s->factor, s->min_lr);
        if (p->lr - reduced > 1e-8) p->lr = reduced; /* torch's eps: ignore negligible changes */
        p->cooldown_left = s->cooldown;
        p->num_bad = 0;
    }
    return p->lr;
}

/* ---- optimizer ------------------------------------------------------------------------ */

st_optim_config st_optim_config_default(st_opt_kind kind) {
    st_optim_config c = {0};
    c.kind = kind;
    c.momentum = 0.0f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.alpha = 0.99f;
    c.weight_decay = kind == ST_OPT_ADAMW ? 1e-2f : 0.0f;
    c.decay_norm_and_bias = 1;
    c.head_lr_mult = 1.0f;
    c.clip_norm = 0.0f;
    return c;
}

static int optim_config_validate(const st_optim_config *c) {
    if (c->kind != ST_OPT_SGD && c->kind != ST_OPT_ADAM && c->kind != ST_OPT_ADAMW &&
        c->kind != ST_OPT_RMSPROP)
        return st_error_set("optimizer: unknown kind %d", (int)c->kind);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return st_error_set("optimizer: momentum %g must be in [0, 1)", c->momentum);
    if (c->nesterov && (c->kind != ST_OPT_SGD || c->momentum <= 0))
        return st_error_set("optimizer: nesterov needs SGD with momentum > 0");
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return st_error_set("optimizer: betas (%g, %g) must be in [0, 1)", c->beta1, c->beta2);
    if (!(c->alpha >= 0 && c->alpha < 1))
        return st_error_set("optimizer: alpha %g must be in [0, 1)", c->alpha);
    if (!(c->eps > 0) && c->kind != ST_OPT_SGD)
        return st_error_set("optimizer: eps %g must be > 0", c->eps);
    if (!(c->weight_decay >= 0))
        return st_error_set("optimizer: weight_decay %g must be >= 0", c->weight_decay);
    if (!(c->head_lr_mult >= 0))
        return st_error_set("optimizer: head_lr_mult %g must be >= 0", c->head_lr_mult);
    if (!(c->clip_norm >= 0))
        return st_error_set("optimizer: clip_norm %g must be >= 0", c->clip_norm);
    return 0;
}

static int kind_uses_m(const st_optim_config *c) {
    return c->kind == ST_OPT_ADAM || c->kind == ST_OPT_ADAMW || (float)c->momentum > 0;
}

static int kind_uses_v(const st_optim_config *c) { return c->kind != ST_OPT_SGD; }

static int is_head_layer(const char *layer) {
    return strcmp(layer, "embedding") == 0 || strcmp(layer, "predictions") == 0;
}

static int is_norm_or_bias(const char *weight) {
    return strcmp(weight, "gamma") == 0 || strcmp(weight, "beta") == 0 ||
           strcmp(weight, "bias") == 0;
}

/* Lay the m and v tensors out in the state arena (sizing pass when it is not committed). */
static void layout_state(st_optimizer *o) {
    st_arena_rewind(&o->state_arena);
    for (int i = 0; i < o->n_slots; i++) {
        st_optim_slot *s = &o->slots[i];
        size_t numel = st_param_storage_numel(o->model, s->param); /* as the grads arena */
        s->m = kind_uses_m(&o->config) ? st_arena_take(&o->state_arena, numel) : NULL;
        s->v = kind_uses_v(&o->config) ? st_arena_take(&o->state_arena, numel) : NULL;
    }
}

/* The gradient of every slot as a span, in slot order, copied once to the device. */
static void upload_gradient_spans(st_optimizer *o) {
    st_backend *be = o->model->backend;
    st_span *host = ST_MALLOC((size_t)o->n_slots * sizeof *host);
    for (int i = 0; i < o->n_slots; i++)
        host[i] = (st_span){.x = o->slots[i].param->grad,
                            .n = st_param_storage_numel(o->model, o->slots[i].param)};
    o->spans = be->alloc(be, (size_t)o->n_slots * sizeof *host);
    be->upload(be, o->spans, host, (size_t)o->n_slots * sizeof *host);
    free(host);
}

st_optimizer *st_optimizer_create(st_model *m, const st_optim_config *cfg) {
    if (optim_config_validate(cfg) < 0) return NULL;
    int trainable = 0;
    for (int i = 0; i < m->n_params; i++) trainable += m->params[i].grad != NULL;
    if (trainable == 0) {
        st_error_set("optimizer: model %s has no trainable parameters (HINT: freeze_until "
                     "freezes every layer and there is no head)", m->arch ? m->arch->name : "?");
        return NULL;
    }
    st_optimizer *o = ST_CALLOC(1, sizeof *o);
    o->config = *cfg;
    o->model = m;
    o->slots = ST_CALLOC((size_t)trainable, sizeof *o->slots);
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (!p->grad) continue;
        st_optim_slot *s = &o->slots[o->n_slots++];
        s->param = p;
        s->lr_mult = is_head_layer(p->layer) ? (float)cfg->head_lr_mult : 1.0f;
        s->decay = cfg->decay_norm_and_bias || !is_norm_or_bias(p->weight);
    }
    o->state_arena.name = "optimizer";
    layout_state(o);
    if (o->state_arena.used > 0) {
        st_arena_commit(&o->state_arena, m->backend); /* zeroed: torch's initial state */
        layout_state(o);
    }
    upload_gradient_spans(o);
    o->status = m->backend->alloc(m->backend, sizeof *o->status); /* zeroed: nothing skipped */
    return o;
}

void st_optimizer_free(st_optimizer *o) {
    if (!o) return;
    st_backend *be = o->model->backend;
    if (o->state_arena.base) st_arena_free(&o->state_arena);
    be->free(be, o->spans);
    be->free(be, o->status);
    free(o->slots);
    free(o);
}

void st_optimizer_step(st_optimizer *o, float lr) {
    st_backend *be = o->model->backend;
    const st_optim_config *c = &o->config;
    /* clip_norm in float32 as torch's max_norm; the verdict stays on the device */
    be->optim_grad_norm(be, o->spans, o->n_slots, (float)c->clip_norm, o->status);
    o->step++; /* undone by st_optimizer_stats when the device skipped the step */
    for (int i = 0; i < o->n_slots; i++) {
        const st_optim_slot *s = &o->slots[i];
        st_optim_desc d = {.kind = c->kind,
                           .lr = lr * s->lr_mult,
                           .momentum = (float)c->momentum,
                           .nesterov = c->nesterov,
                           .beta1 = (float)c->beta1,
                           .beta2 = (float)c->beta2,
                           .eps = (float)c->eps,
                           .alpha = (float)c->alpha,
                           .weight_decay = s->decay ? (float)c->weight_decay : 0.0f,
                           .step = o->step};
        be->optim_step(be, &d, s->param->value, s->param->grad, s->m, s->v,
                       st_param_storage_numel(o->model, s->param), o->status);
    }
}

st_optim_stats st_optimizer_stats(st_optimizer *o) {
    st_backend *be = o->model->backend;
    st_optim_status status;
    be->download(be, &status, o->status, sizeof status);
    if (status.skipped > 0) { /* fold the device's skips into the host counters */
        o->step -= (long)status.skipped;
        o->skipped_steps += (long)status.skipped;
        status.skipped = 0;
        be->upload(be, o->status, &status, sizeof status);
    }
    return (st_optim_stats){.norm = status.norm, .step = o->step,
                            .skipped_steps = o->skipped_steps};
}

int st_optimizer_blob_count(const st_optimizer *o) {
    return o->n_slots * (kind_uses_m(&o->config) + kind_uses_v(&o->config));
}

st_optim_blob st_optimizer_blob(const st_optimizer *o, int index) {
    ST_CHECK(index >= 0 && index < st_optimizer_blob_count(o), "optimizer blob %d of %d", index,
             st_optimizer_blob_count(o));
    const int per_slot = kind_uses_m(&o->config) + kind_uses_v(&o->config);
    const st_optim_slot *s = &o->slots[index / per_slot];
    const int is_v = !kind_uses_m(&o->config) || index % per_slot == 1;
    st_optim_blob b;
    snprintf(b.name, sizeof b.name, "%s/%s/%s", is_v ? "v" : "m", s->param->layer,
             s->param->weight);
    b.data = is_v ? s->v : s->m;
    b.param = s->param;
    b.numel = s->param->numel;
    return b;
}
