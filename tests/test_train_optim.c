/*
 * test_train_optim.c: the trainer's optimizer (train/optim.c) on a hand-built st_model whose
 * parameter list mixes trainable kernels, BN gamma/beta, biases, head layers, BN moving
 * statistics and a frozen layer, so it runs without the ResNet builder:
 *   - slots: frozen tensors and moving statistics are never touched;
 *   - groups: weight decay off for gamma/beta/bias when asked, head_lr_mult on `embedding` and
 *     `predictions`; every tensor must equal a direct optim_step with its group's lr and wd;
 *   - global-norm clipping (torch clip_grad_norm_) and the skip on a non-finite gradient, both
 *     decided by the backend without a read back: the clip equals today's in-place scaling bit
 *     for bit, a skipped Adam step does not advance the bias correction, and the counters are
 *     folded once by st_optimizer_stats;
 *   - checkpoint blobs: names, and save after 3 steps / restore into a fresh optimizer /
 *     2 more steps == 5 uninterrupted steps, bit for bit.
 */
#include <stdint.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/optim.h"

enum { N_PARAMS = 7 };
static const struct {
    const char *layer, *weight;
    int numel, trainable;
} SPEC[N_PARAMS] = {
    {"conv1_conv", "kernel", 10, 1},     {"conv1_bn", "gamma", 5, 1},
    {"conv1_bn", "beta", 5, 1},          {"conv1_bn", "moving_mean", 5, 0},
    {"conv2_conv", "kernel", 6, 0},      {"embedding", "kernel", 8, 1},
    {"embedding", "bias", 4, 1},
};

static float host_value(int p, int i, int seed) {
    return (float)sin(0.37 * (i + 1) * (p + 2) + seed);
}

static st_model fake_model(st_backend *be) {
    st_model m;
    memset(&m, 0, sizeof m);
    m.backend = be;
    m.n_params = N_PARAMS;
    m.params = ST_CALLOC(N_PARAMS, sizeof(st_param));
    for (int p = 0; p < N_PARAMS; p++) {
        st_param *q = &m.params[p];
        q->layer = SPEC[p].layer;
        q->weight = SPEC[p].weight;
        q->rank = 1;
        q->dims[0] = SPEC[p].numel;
        q->numel = (size_t)SPEC[p].numel;
        q->trainable = SPEC[p].trainable;
        q->value = be->alloc(be, sizeof(float) * q->numel);
        q->grad = q->trainable ? be->alloc(be, sizeof(float) * q->numel) : NULL;
    }
    return m;
}

static void free_fake_model(st_model *m) {
    for (int p = 0; p < m->n_params; p++) {
        m->backend->free(m->backend, m->params[p].value);
        if (m->params[p].grad) m->backend->free(m->backend, m->params[p].grad);
    }
    free(m->params);
}

/* Values from seed; gradients from seed + step (gradient seeds differ from value seeds). */
static void set_values(st_model *m, int seed) {
    float buf[16];
    for (int p = 0; p < m->n_params; p++) {
        for (size_t i = 0; i < m->params[p].numel; i++) buf[i] = host_value(p, (int)i, seed);
        m->backend->upload(m->backend, m->params[p].value, buf, sizeof(float) * m->params[p].numel);
    }
}

static void set_grads(st_model *m, int step, float scale) {
    float buf[16];
    for (int p = 0; p < m->n_params; p++) {
        if (!m->params[p].grad) continue;
        for (size_t i = 0; i < m->params[p].numel; i++)
            buf[i] = scale * host_value(p, (int)i, 100 + step);
        m->backend->upload(m->backend, m->params[p].grad, buf, sizeof(float) * m->params[p].numel);
    }
}

static void get_values(st_model *m, float *out /* (sum numel) */) {
    for (int p = 0; p < m->n_params; p++) {
        const size_t bytes = sizeof(float) * m->params[p].numel;
        m->backend->download(m->backend, out, m->params[p].value, bytes);
        out += m->params[p].numel;
    }
}

enum { TOTAL = 10 + 5 + 5 + 5 + 6 + 8 + 4 };

/* Adam, wd 0.1 on kernels only, head x10: each tensor against a direct backend optim_step with
 * its group's lr and wd (same kernel, so equality is exact). */
static void groups_and_frozen(st_backend *be) {
    st_model m = fake_model(be);
    set_values(&m, 1);
    set_grads(&m, 0, 1.0f);
    st_optim_config cfg = st_optim_config_default(ST_OPT_ADAM);
    cfg.weight_decay = 0.1f;
    cfg.decay_norm_and_bias = 0;
    cfg.head_lr_mult = 10.0f;
    st_optimizer *o = st_optimizer_create(&m, &cfg);
    TEST_CHECK(o && o->n_slots == 5, "5 trainable slots expected, got %d", o ? o->n_slots : -1);
    st_optimizer_step(o, 1e-2f);
    float got[TOTAL];
    get_values(&m, got);
    const float *g = got;
    for (int p = 0; p < N_PARAMS; p++) {
        const int n = SPEC[p].numel;
        float value[16], grad[16], mstate[16] = {0}, vstate[16] = {0};
        for (int i = 0; i < n; i++) {
            value[i] = host_value(p, i, 1);
            grad[i] = host_value(p, i, 100);
        }
        if (SPEC[p].trainable) {
            const int head = strcmp(SPEC[p].layer, "embedding") == 0;
            const int decay = strcmp(SPEC[p].weight, "kernel") == 0;
            st_optim_desc d = {.kind = ST_OPT_ADAM, .lr = head ? 1e-2f * 10.0f : 1e-2f,
                               .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                               .weight_decay = decay ? 0.1f : 0, .step = 1};
            be->optim_step(be, &d, value, grad, mstate, vstate, (size_t)n, NULL);
        }
        TEST_CLOSE(SPEC[p].trainable ? "group update" : "frozen tensor untouched", g, value,
                   (size_t)n, 0, 0);
        g += n;
    }
    TEST_CHECK(st_optimizer_blob_count(o) == 10, "Adam: m and v per slot, got %d blobs",
               st_optimizer_blob_count(o));
    st_optim_blob b = st_optimizer_blob(o, 3);
    TEST_CHECK(strcmp(b.name, "v/conv1_bn/gamma") == 0 && b.numel == 5,
               "blob 3 is %s (%zu), want v/conv1_bn/gamma (5)", b.name, b.numel);
    st_optimizer_free(o);
    free_fake_model(&m);
}

/* SGD lr 1 without momentum: the parameter change is the (clipped) gradient. Gradient norm
 * 'norm' is clipped to 0.5: the update's norm must be 0.5 * norm / (norm + 1e-6) within
 * float32 rounding of a 38-element sum (rel 1e-6). */
static void clipping_and_nonfinite(st_backend *be) {
    st_model m = fake_model(be);
    set_values(&m, 2);
    set_grads(&m, 3, 4.0f);
    st_optim_config cfg = st_optim_config_default(ST_OPT_SGD);
    cfg.clip_norm = 0.5f;
    st_optimizer *o = st_optimizer_create(&m, &cfg);
    TEST_CHECK(st_optimizer_blob_count(o) == 0, "plain SGD keeps no state");
    float before[TOTAL], after[TOTAL];
    get_values(&m, before);
    st_optimizer_step(o, 1.0f);
    double norm = st_optimizer_stats(o).norm;
    get_values(&m, after);
    double moved = 0;
    for (int i = 0; i < TOTAL; i++)
        moved += ((double)after[i] - before[i]) * (after[i] - before[i]);
    double want = 0.5 * norm / (norm + 1e-6);
    TEST_CHECK(norm > 1.0 && fabs(sqrt(moved) - want) <= 1e-6 * want,
               "clipped update norm %.9g, want %.9g (gradient norm %.6g)", sqrt(moved), want, norm);

    float nan_grad = NAN;
    be->upload(be, m.params[0].grad, &nan_grad, sizeof nan_grad);
    st_optimizer_step(o, 1.0f);
    st_optim_stats bad = st_optimizer_stats(o);
    float again[TOTAL];
    get_values(&m, again);
    TEST_CHECK(!isfinite(bad.norm) && o->skipped_steps == 1 && o->step == 1 &&
                   bad.skipped_steps == 1 && bad.step == 1,
               "non-finite gradient: norm %g, skipped %ld, step %ld", bad.norm, o->skipped_steps,
               o->step);
    TEST_CLOSE("skipped step leaves the parameters", again, after, TOTAL, 0, 0);
    st_optim_stats twice = st_optimizer_stats(o);
    TEST_CHECK(twice.skipped_steps == 1 && twice.step == 1,
               "a second stats read must not count the skip again: skipped %ld, step %ld",
               twice.skipped_steps, twice.step);
    st_optimizer_free(o);
    free_fake_model(&m);
}

/* The device-side clip must be today's in-place clip bit for bit: SGD with momentum and wd,
 * clip 0.5, against the gradients scaled by (float)(0.5 / (norm + 1e-6)) with be->scale (the
 * norm from one be->sum_squares per tensor, added in slot order) then unclipped optim_steps. */
static void clipping_matches_inplace_scale(st_backend *be) {
    st_model m = fake_model(be), ref = fake_model(be);
    set_values(&m, 5);
    set_values(&ref, 5);
    st_optim_config cfg = st_optim_config_default(ST_OPT_SGD);
    cfg.momentum = 0.9f;
    cfg.weight_decay = 1e-2f;
    cfg.clip_norm = 0.5f;
    st_optimizer *o = st_optimizer_create(&m, &cfg);
    float mstate[N_PARAMS][16];
    memset(mstate, 0, sizeof mstate);
    for (int t = 0; t < 3; t++) {
        set_grads(&m, t, 3.0f);
        set_grads(&ref, t, 3.0f);
        st_optimizer_step(o, 0.1f);
        double sum = 0;
        for (int p = 0; p < N_PARAMS; p++)
            if (ref.params[p].grad)
                sum += be->sum_squares(be, ref.params[p].grad, ref.params[p].numel);
        double coef = (double)0.5f / (sqrt(sum) + 1e-6);
        TEST_CHECK(coef < 1.0, "step %d: the gradients (norm %g) must be clipped", t, sqrt(sum));
        for (int p = 0; p < N_PARAMS; p++) {
            st_param *q = &ref.params[p];
            if (!q->grad) continue;
            be->scale(be, q->grad, (float)coef, q->numel);
            st_optim_desc d = {.kind = ST_OPT_SGD, .lr = 0.1f, .momentum = 0.9f,
                               .weight_decay = 1e-2f, .step = t + 1};
            be->optim_step(be, &d, q->value, q->grad, mstate[p], NULL, q->numel, NULL);
        }
        TEST_CHECK(st_optimizer_stats(o).norm == sqrt(sum), "step %d: norm %.17g vs %.17g", t,
                   st_optimizer_stats(o).norm, sqrt(sum));
    }
    float got[TOTAL], want[TOTAL];
    get_values(&m, got);
    get_values(&ref, want);
    TEST_CLOSE("device-side clip == in-place scale", got, want, TOTAL, 0, 0);
    st_optimizer_free(o);
    free_fake_model(&m);
    free_fake_model(&ref);
}

/* Adam with an infinite gradient at step 2 of 4: the skipped step must leave parameters and
 * state alone and must not advance the bias correction, so the result equals 3 clean steps
 * bit for bit, with the counters only read at the end (no read back between steps). */
static void skip_keeps_adam_bias_correction(st_backend *be) {
    st_optim_config cfg = st_optim_config_default(ST_OPT_ADAM);
    st_model m = fake_model(be), ref = fake_model(be);
    set_values(&m, 7);
    set_values(&ref, 7);
    st_optimizer *o = st_optimizer_create(&m, &cfg), *r = st_optimizer_create(&ref, &cfg);
    for (int t = 0, clean = 0; t < 4; t++) {
        if (t == 1) {
            float inf_grad = INFINITY;
            set_grads(&m, 99, 1.0f);
            be->upload(be, m.params[5].grad, &inf_grad, sizeof inf_grad);
        } else {
            set_grads(&m, clean, 1.0f);
            set_grads(&ref, clean, 1.0f);
            st_optimizer_step(r, 1e-2f);
            clean++;
        }
        st_optimizer_step(o, 1e-2f);
    }
    float got[TOTAL], want[TOTAL];
    get_values(&m, got);
    get_values(&ref, want);
    TEST_CLOSE("Adam with a skipped step == the clean steps", got, want, TOTAL, 0, 0);
    st_optim_stats s = st_optimizer_stats(o);
    TEST_CHECK(s.step == 3 && s.skipped_steps == 1 && isfinite(s.norm) && s.norm > 0,
               "after 4 steps, 1 skipped: step %ld, skipped %ld, last norm %g", s.step,
               s.skipped_steps, s.norm);
    st_optimizer_free(o);
    st_optimizer_free(r);
    free_fake_model(&m);
    free_fake_model(&ref);
}

/* RMSprop with momentum (both m and v in use): 5 straight steps vs 3 steps, blobs and counter
 * saved to host, a fresh optimizer restored from them, 2 more steps. Bit-exact. */
static void checkpoint_roundtrip(st_backend *be) {
    st_optim_config cfg = st_optim_config_default(ST_OPT_RMSPROP);
    cfg.momentum = 0.9f;
    cfg.weight_decay = 1e-3f;
    st_model m = fake_model(be);
    set_values(&m, 3);
    st_optimizer *o = st_optimizer_create(&m, &cfg);
    for (int t = 0; t < 5; t++) {
        set_grads(&m, t, 1.0f);
        st_optimizer_step(o, 1e-2f);
    }
    float straight[TOTAL], resumed[TOTAL];
    get_values(&m, straight);
    st_optimizer_free(o);

    set_values(&m, 3);
    o = st_optimizer_create(&m, &cfg);
    for (int t = 0; t < 3; t++) {
        set_grads(&m, t, 1.0f);
        st_optimizer_step(o, 1e-2f);
    }
    const int blobs = st_optimizer_blob_count(o);
    float *saved = malloc(sizeof(float) * 2 * TOTAL);
    size_t at = 0;
    for (int i = 0; i < blobs; i++) {
        st_optim_blob b = st_optimizer_blob(o, i);
        be->download(be, saved + at, b.data, sizeof(float) * b.numel);
        at += b.numel;
    }
    long step = o->step;
    st_optimizer_free(o);
    o = st_optimizer_create(&m, &cfg);
    TEST_CHECK(st_optimizer_blob_count(o) == blobs, "same blobs after re-creation");
    at = 0;
    for (int i = 0; i < blobs; i++) {
        st_optim_blob b = st_optimizer_blob(o, i);
        be->upload(be, b.data, saved + at, sizeof(float) * b.numel);
        at += b.numel;
    }
    o->step = step;
    for (int t = 3; t < 5; t++) {
        set_grads(&m, t, 1.0f);
        st_optimizer_step(o, 1e-2f);
    }
    get_values(&m, resumed);
    TEST_CLOSE("resumed == uninterrupted", resumed, straight, TOTAL, 0, 0);
    free(saved);
    st_optimizer_free(o);
    free_fake_model(&m);
}

static void refused_configs(st_backend *be) {
    st_model m = fake_model(be);
    st_optim_config cfg = st_optim_config_default(ST_OPT_SGD);
    cfg.nesterov = 1;
    TEST_CHECK(st_optimizer_create(&m, &cfg) == NULL && strstr(st_error_get(), "nesterov"),
               "nesterov without momentum must be refused: %s", st_error_get());
    cfg = st_optim_config_default(ST_OPT_ADAM);
    cfg.beta2 = 1.0f;
    TEST_CHECK(st_optimizer_create(&m, &cfg) == NULL && strstr(st_error_get(), "betas"),
               "beta2 = 1 must be refused: %s", st_error_get());
    st_lr_schedule s = st_lr_schedule_default(ST_LR_COSINE, 0.1);
    s.warmup = 5;
    s.total = 5;
    TEST_CHECK(st_lr_schedule_validate(&s, "cfg.yaml: schedule") < 0 &&
                   strstr(st_error_get(), "cfg.yaml: schedule"),
               "cosine with total <= warmup must be refused naming the source: %s", st_error_get());
    free_fake_model(&m);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 1);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    groups_and_frozen(be);
    clipping_and_nonfinite(be);
    clipping_matches_inplace_scale(be);
    skip_keeps_adam_bias_correction(be);
    checkpoint_roundtrip(be);
    refused_configs(be);
    st_backend_close(be);
    return test_finish("test_train_optim");
}
