/*
 * test_gpu_train_step.c: one whole training step of a ResNet on the CUDA backend against the
 * same step on the CPU backend (the GPU issue's parity test; tests/test_gpu_ops.c checks the ops
 * one by one, this checks how the model, the loss layer and the optimizer drive them).
 *
 * Cases: tv_resnet18 and resnet50v2 at 64x64, batch 4; freeze_until none and the last layer of
 * conv3 (frozen conv+BN folded, BN in inference mode below, batch statistics above); three heads:
 * classifier 5 on the pooled features (cross-entropy, label smoothing 0.1), embedding 16 + L2 +
 * classifier 5 (cross-entropy), embedding 16 alone (batch-hard triplet, P = 2 identities x K = 2,
 * margin 0.5). Both models come from the same seed (checked bit-identical); the CPU model's
 * gamma, beta, biases and moving statistics are then randomised (so BN folding and biases are
 * not trivial), its residual branches damped (randomize_parameters says why), and every
 * parameter is copied into the CUDA model by (layer, weight). One step on each backend from the
 * same random input and labels:
 *   forward (training)           every materialised layer output and its ReLU zero pattern
 *                                (check_forward); the loss; BN moving statistics (frozen ones
 *                                must not move)
 *   backward                     every trainable parameter's gradient, the same frozen set
 *   SGD, momentum 0.9            global gradient norm; the update (after - before) per tensor,
 *                                frozen tensors untouched; each backend from its own gradients
 *   Adam (wd 1e-4, clip 1.0)     from the SAME gradients (the CPU's, uploaded to the device) and
 *                                the same parameters: the updated parameters element by element.
 *                                Adam's first step is lr * g / (|g| + eps), about lr * sign(g): a
 *                                gradient element at rounding-noise level (an analytically zero
 *                                conv bias ahead of a batch-statistics BN, or a near-cancelling
 *                                element) flips sign between two correct backends, so it is fed
 *                                identical gradients, as test_gpu_ops feeds backward ops
 *                                identical forward results.
 * ReLU kinks: an activation within rounding of 0 can be clamped on one backend only; the
 * gradient of every layer below then differs by one element of dy, ~1e-2 relative in a conv5
 * tensor (measured). Such an input is replaced by a fresh random one (up to MAX_ATTEMPTS); if all
 * flip, only the parameters above the highest flipped layer are compared (and it is printed).
 * A zero-pattern difference away from 0 is a failure.
 *
 * Tolerances (why each value; TF32 is off: the test unsets SIMTUNE_CUDA_TF32). Measured with
 * `noisy-cpu` (below: 1e-6 relative noise, ~10 ulp, on every conv output, forward and backward):
 * largest gradient / update error 3e-4; 3 of 12 cases (resnet50v2) needed another input, one
 * of them flipped in all 4 and was compared above conv2_block2_preact_relu.
 *   GRAD_TOL 1e-3    relative error by norm per gradient tensor and per SGD update. cuDNN and
 *                    oneDNN pick different algorithms, so every conv and BN reduction sums in a
 *                    different order: per op ~1e-6 typical, 5e-5 worst (test_gpu_ops). Through
 *                    the up to ~50 layers of backward these compound and BN backward with batch
 *                    statistics over few rows (conv5: 2x2 x 4 images = 16 rows) amplifies them:
 *                    3e-4 measured from 1e-6 noise; on the CPU alone the float32 gradients differ
 *                    from float64 PyTorch by up to 2e-4 (test_resnet_parity). 1e-3 is the
 *                    issue's gradient bound of the PyTorch parity test. A real bug (wrong BN
 *                    mode, missing residual term, transposed filter, wrong lr group) gives
 *                    errors >= 1e-2. A conv bias followed only by batch-statistics BNs has an
 *                    exact gradient of 0: both backends hold rounding noise there, so it is
 *                    measured against its layer's kernel gradient norm instead (tensor_error).
 *   FORWARD_TOL 1e-3 by norm per layer output: 1e-6 noise per conv grows to 1e-4 in conv5 of an
 *                    undamped resnet50v2 (measured); damped, far less. A wrong op gives >= 1e-2.
 *   LOSS_TOL 1e-3    relative: the loss follows the logits / embedding at the forward error
 *                    above; the triplet loss (differences of distances) amplified 1e-6 noise to
 *                    7e-5 relative undamped.
 *   MOVING_TOL 1e-4  by norm: moving statistics = 0.9 old + 0.1 batch statistics of forward
 *                    activations: the forward error scaled down by 0.1 (variance doubles it).
 *   ADAM 1e-5 rel + 1e-7 abs elementwise: identical inputs, one step of the shared per-element
 *                    formula (test_gpu_ops TOL_OPT: FMA contraction and sqrtf ulps, amplified
 *                    by Adam's division); the clip factor comes from double sums of squares in
 *                    different orders (~1e-15 relative).
 *
 * Usage: test_gpu_train_step [BACKEND]  BACKEND defaults to cuda. Exits 77 (skipped) when
 * st_backend_open fails: no device, or a build without CUDA; a missing device is not a missing
 * oracle, so this skip stands even under SIMTUNE_REQUIRE_ORACLES=1. `cpu` runs the harness
 * against a second CPU backend (a check of this file: every difference is 0); `noisy-cpu` runs
 * it against a CPU backend whose convolutions add ~1e-6 relative noise to every output, a
 * stand-in for a second backend with other summation orders, to show the tolerances hold on
 * machines without a GPU. Labelled `gpu` (tests/gpu_train_step.cmake). ~25 s on 2 cores, almost
 * all of it the CPU side.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/check.h"
#include "test_util.h"
#include "infer/model/model.h"
#include "train/loss.h"
#include "train/optim.h"

enum { BATCH = 4, SIDE = 64, CLASSES = 5, EMBED = 16, SEED = 7 };

static const double GRAD_TOL = 1e-3;
static const double LOSS_TOL = 1e-3;
static const double MOVING_TOL = 1e-4;
static const double FORWARD_TOL = 1e-3;
static const double KINK = 1e-3;
enum { MAX_ATTEMPTS = 4 };
static const double ADAM_RTOL = 1e-5, ADAM_ATOL = 1e-7;
static const float SGD_LR = 0.05f, ADAM_LR = 1e-3f;

static st_backend *ref; /* CPU backend, the reference */
static st_backend *dev; /* backend under test */
static double worst_grad_error; /* largest gradient / update error seen, printed at the end */
static char worst_grad_where[200];

static float urand(float lo, float hi) { return lo + (hi - lo) * (float)test_uniform(); }

static float *download(st_backend *be, const float *src, size_t n) {
    float *h = ST_MALLOC(n * sizeof *h);
    be->download(be, h, src, n * sizeof *h);
    return h;
}

/* Host copy (file layout, p->numel floats) of a parameter-shaped device buffer of m. */
static float *param_download(const st_model *m, const st_param *p, const float *device) {
    float *h = ST_MALLOC(p->numel * sizeof *h);
    st_param_download(m, p, device, h);
    return h;
}

/* ---- noisy-cpu: a CPU backend whose convolutions perturb their outputs ------------------- */

enum { MAX_PLANS = 256 };
static struct {
    st_conv_plan *plan;
    st_conv_desc desc;
} noisy_plans[MAX_PLANS];
static int noisy_n_plans;
static st_backend noisy_backend; /* copy of a CPU backend with the conv members wrapped */
static st_backend *noisy_inner;  /* the CPU backend it forwards to */

static const st_conv_desc *noisy_desc(const st_conv_plan *p) {
    for (int i = 0; i < noisy_n_plans; i++)
        if (noisy_plans[i].plan == p) return &noisy_plans[i].desc;
    ST_FAIL("noisy-cpu: unknown conv plan");
}

/* x[i] += u_i * 1e-6 * rms(x), u uniform in [-1, 1): a few ulp of the tensor's scale, what a
 * different summation order leaves on a dot product of random-sign terms. */
static void add_rounding_noise(float *x, size_t n) {
    float *h = download(noisy_inner, x, n);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)h[i] * h[i];
    float amplitude = (float)(1e-6 * sqrt(ss / (double)n));
    for (size_t i = 0; i < n; i++) h[i] += amplitude * urand(-1, 1);
    noisy_inner->upload(noisy_inner, x, h, n * sizeof *h);
    free(h);
}

static st_conv_plan *noisy_conv_plan(st_backend *be, const st_conv_desc *d) {
    (void)be;
    st_conv_plan *p = noisy_inner->conv_plan(noisy_inner, d);
    for (int i = 0; i < noisy_n_plans; i++)
        if (noisy_plans[i].plan == p) return p;
    ST_CHECK(noisy_n_plans < MAX_PLANS, "noisy-cpu: more than %d conv shapes", MAX_PLANS);
    noisy_plans[noisy_n_plans].plan = p;
    noisy_plans[noisy_n_plans].desc = *d;
    st_conv_desc_finish(&noisy_plans[noisy_n_plans].desc);
    noisy_n_plans++;
    return p;
}

static void noisy_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                               const float *bias, float *y) {
    (void)be;
    const st_conv_desc *d = noisy_desc(p);
    noisy_inner->conv_forward(noisy_inner, p, x, w, bias, y);
    add_rounding_noise(y, (size_t)d->n * d->p * d->q * d->k);
}

static void noisy_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy,
                                     const float *w, float *dx) {
    (void)be;
    const st_conv_desc *d = noisy_desc(p);
    noisy_inner->conv_backward_data(noisy_inner, p, dy, w, dx);
    add_rounding_noise(dx, (size_t)d->n * d->h * d->w * d->c);
}

static void noisy_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x,
                                       const float *dy, float *dw, float *dbias) {
    (void)be;
    const st_conv_desc *d = noisy_desc(p);
    noisy_inner->conv_backward_filter(noisy_inner, p, x, dy, dw, dbias);
    add_rounding_noise(dw, noisy_inner->conv_weights_numel(noisy_inner, p)); /* backend layout */
    if (dbias) add_rounding_noise(dbias, (size_t)d->k);
}

/* The CPU backend's members, with the four convolution members wrapped. The CPU ops receive
 * the copy as `be` and only read its ctx and thread count, which are the original's. */
static st_backend *open_noisy_cpu(void) {
    noisy_inner = st_backend_open("cpu", 2);
    ST_CHECK(noisy_inner, "cpu backend: %s", st_error_get());
    noisy_backend = *noisy_inner;
    noisy_backend.conv_plan = noisy_conv_plan;
    noisy_backend.conv_forward = noisy_conv_forward;
    noisy_backend.conv_backward_data = noisy_conv_backward_data;
    noisy_backend.conv_backward_filter = noisy_conv_backward_filter;
    return &noisy_backend;
}

/* ---- model setup ----------------------------------------------------------------------- */

typedef struct step_case {
    const char *arch;
    const char *freeze;   /* freeze_until: "none" or a layer name */
    int embed_dim;        /* 0 or EMBED */
    int num_classes;      /* 0 or CLASSES */
    st_loss_kind loss;
} step_case;

static st_model *create_model(st_backend *be, const step_case *c) {
    st_model_config cfg = {.arch = c->arch, .batch = BATCH, .height = SIDE, .width = SIDE,
                           .training = 1, .freeze_until = c->freeze, .pool = ST_GPOOL_AVG,
                           .gem_p = 3.0f, .embed_dim = c->embed_dim,
                           .num_classes = c->num_classes, .bn_momentum = 0.1f};
    st_model *m = st_model_create(be, &cfg, SEED);
    ST_CHECK(m, "%s: st_model_create on %s: %s", c->arch, be->name, st_error_get());
    return m;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* 1 for the tensor that ends a residual branch: the branch's last BN gamma (_3_bn, or _2_bn of
 * a basic block) or the v2 _3_conv kernel, which has no BN after it. */
static int ends_residual_branch(st_model *m, const st_param *p) {
    char sibling[160];
    if (strcmp(p->weight, "gamma") == 0 && ends_with(p->layer, "_3_bn")) return 1;
    if (strcmp(p->weight, "gamma") == 0 && ends_with(p->layer, "_2_bn")) {
        snprintf(sibling, sizeof sibling, "%.*s_3_conv", (int)(strlen(p->layer) - 5), p->layer);
        return st_model_find_param(m, sibling, "kernel") == NULL;
    }
    if (strcmp(p->weight, "kernel") == 0 && ends_with(p->layer, "_3_conv")) {
        snprintf(sibling, sizeof sibling, "%.*s_3_bn", (int)(strlen(p->layer) - 7), p->layer);
        return st_model_find_param(m, sibling, "gamma") == NULL;
    }
    return 0;
}

/* Random gamma, beta, biases and moving statistics, so BN folding and bias paths matter; then
 * the last tensor of every residual branch scaled by 0.1 (as tests/torch_resnet.py does, why
 * there): a randomly initialised deep ResNet with batch statistics is chaotic, rounding-size
 * forward differences grow to ~1e-4 in conv5 of resnet50v2 and flip ReLUs in most inputs
 * (measured with noisy-cpu); damped branches keep it near identity like a trained ResNet. */
static void randomize_parameters(st_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        int kernel = strcmp(p->weight, "kernel") == 0;
        float lo = -0.2f, hi = 0.2f; /* beta, bias, moving_mean */
        if (strcmp(p->weight, "gamma") == 0 || strcmp(p->weight, "moving_variance") == 0) {
            lo = 0.5f;
            hi = 1.5f;
        }
        float damping = ends_residual_branch(m, p) ? 0.1f : 1.0f;
        if (kernel && damping == 1.0f) continue;
        float *h = param_download(m, p, p->value);
        for (size_t j = 0; j < p->numel; j++) h[j] = damping * (kernel ? h[j] : urand(lo, hi));
        st_param_upload(m, p, h, p->value);
        free(h);
    }
    st_model_weights_changed(m);
}

static st_param *twin_param(st_model *m, const st_param *p, const char *what) {
    st_param *q = st_model_find_param(m, p->layer, p->weight);
    ST_CHECK(q && q->numel == p->numel, "%s: %s/%s missing or of another size on %s", what,
             p->layer, p->weight, m->backend->name);
    return q;
}

/* The same seed gives the same parameters on both backends (the init is host-side, so they are
 * bit-identical); checked on freshly created models. */
static void check_same_init(st_model *a, st_model *b, const char *what) {
    TEST_CHECK(a->n_params == b->n_params, "%s: %d parameters on %s, %d on %s", what,
               a->n_params, a->backend->name, b->n_params, b->backend->name);
    for (int i = 0; i < a->n_params; i++) {
        st_param *p = &a->params[i], *q = twin_param(b, p, what);
        float *x = param_download(a, p, p->value);
        float *y = param_download(b, q, q->value);
        TEST_CHECK(memcmp(x, y, p->numel * sizeof *x) == 0,
                   "%s: %s/%s: same seed, different init on %s", what, p->layer, p->weight,
                   b->backend->name);
        free(x);
        free(y);
    }
}

/* Every parameter of src into dst by (layer, weight). */
static void copy_params_by_name(st_model *dst, st_model *src, const char *what) {
    for (int i = 0; i < src->n_params; i++) {
        st_param *p = &src->params[i], *q = twin_param(dst, p, what);
        float *h = param_download(src, p, p->value);
        st_param_upload(dst, q, h, q->value);
        free(h);
    }
    st_model_weights_changed(dst);
}

/* Host copies of every parameter value, indexed like m->params. */
static float **snapshot_values(st_model *m) {
    float **s = ST_MALLOC((size_t)m->n_params * sizeof *s);
    for (int i = 0; i < m->n_params; i++)
        s[i] = param_download(m, &m->params[i], m->params[i].value);
    return s;
}

/* The values of snapshot s (indexed like src->params) into m, by (layer, weight). */
static void restore_values(st_model *m, const st_model *src, float **s, const char *what) {
    for (int i = 0; i < src->n_params; i++) {
        st_param *q = twin_param(m, &src->params[i], what);
        st_param_upload(m, q, s[i], q->value);
    }
    st_model_weights_changed(m);
}

static void free_snapshot(float **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

/* ---- comparisons ----------------------------------------------------------------------- */

static double norm2(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* ||got - want|| / ||want||, except for a conv bias whose reference is below 1e-4 of its layer's
 * kernel tensor (kernel_want, kernel_n): an analytically zero gradient (every path runs through
 * a BN with batch statistics, which removes per-channel shifts) where both backends hold float
 * rounding noise (~1e-7 of the kernel's); it is measured against the kernel's norm instead. A
 * true bias gradient is ~1e-2 of the kernel's or more, far above the switch. */
static double tensor_error(const st_param *p, const float *got, const float *want,
                           const float *kernel_want, size_t kernel_n) {
    double err = test_rel_error(got, want, p->numel);
    if (strcmp(p->weight, "bias") == 0 && kernel_want) {
        double kernel_norm = norm2(kernel_want, kernel_n);
        if (norm2(want, p->numel) < 1e-4 * kernel_norm) {
            double diff = 0;
            for (size_t i = 0; i < p->numel; i++)
                diff += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
            err = sqrt(diff) / kernel_norm;
        }
    }
    return err;
}

static void note_error(double err, const char *what, const st_param *p) {
    if (err > worst_grad_error) {
        worst_grad_error = err;
        snprintf(worst_grad_where, sizeof worst_grad_where, "%s %s/%s", what, p->layer, p->weight);
    }
    TEST_CHECK(err <= GRAD_TOL, "%s: %s/%s: relative error by norm %.3g > %.3g", what, p->layer,
               p->weight, err, GRAD_TOL);
}

/* Host arrays per parameter: grad (or update) of the reference and of the device model. */
typedef struct tensor_pair {
    float **want, **got; /* indexed like the CPU model's params; NULL where no gradient */
} tensor_pair;

/* Parameters of layers at or below kink_layer (see check_forward) are not compared: a ReLU
 * there took a different branch on the two backends, legitimately. */
static void check_tensor_pairs(st_model *mr, tensor_pair t, int kink_layer, const char *what) {
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i];
        if (!t.want[i] || !t.got[i] || p->layer_index <= kink_layer) continue;
        const float *kernel_want = NULL;
        size_t kernel_n = 0;
        if (strcmp(p->weight, "bias") == 0) {
            for (int j = 0; j < mr->n_params; j++) {
                st_param *k = &mr->params[j];
                if (k->rank == 4 && t.want[j] && strcmp(k->layer, p->layer) == 0) {
                    kernel_want = t.want[j];
                    kernel_n = k->numel;
                }
            }
        }
        note_error(tensor_error(p, t.got[i], t.want[i], kernel_want, kernel_n), what, p);
    }
}

static void free_pairs(tensor_pair t, int n) {
    for (int i = 0; i < n; i++) {
        free(t.want[i]);
        free(t.got[i]);
    }
    free(t.want);
    free(t.got);
}

/* Every trainable parameter's gradient; the frozen set must be the same on both. */
static void check_gradients(st_model *mr, st_model *md, int kink_layer, const char *what) {
    tensor_pair t = {ST_MALLOC((size_t)mr->n_params * sizeof(float *)),
                     ST_MALLOC((size_t)mr->n_params * sizeof(float *))};
    int n_grads = 0;
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        t.want[i] = t.got[i] = NULL;
        TEST_CHECK(!p->grad == !q->grad, "%s: %s/%s has a gradient on one backend only", what,
                   p->layer, p->weight);
        if (!p->grad || !q->grad) continue;
        t.want[i] = param_download(mr, p, p->grad);
        t.got[i] = param_download(md, q, q->grad);
        n_grads++;
    }
    TEST_CHECK(n_grads > 0, "%s: no trainable parameter", what);
    char label[200];
    snprintf(label, sizeof label, "%s gradient", what);
    check_tensor_pairs(mr, t, kink_layer, label);
    free_pairs(t, mr->n_params);
}

/* After the training forward: updated from batch statistics like the CPU's, except in frozen
 * layers (inference-mode BN), where they must not move at all. */
static void check_moving_statistics(st_model *mr, st_model *md, float **before,
                                    const char *what) {
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i];
        if (strncmp(p->weight, "moving_", 7) != 0) continue;
        st_param *q = twin_param(md, p, what);
        float *want = download(ref, p->value, p->numel), *got = download(dev, q->value, q->numel);
        double err = test_rel_error(got, want, p->numel);
        TEST_CHECK(err <= MOVING_TOL, "%s: %s/%s after the forward: relative error %.3g > %.3g",
                   what, p->layer, p->weight, err, MOVING_TOL);
        if (p->layer_index <= mr->freeze_index)
            TEST_CHECK(memcmp(got, before[i], p->numel * sizeof(float)) == 0,
                       "%s: %s/%s of a frozen layer moved", what, p->layer, p->weight);
        free(want);
        free(got);
    }
}

/* SGD with momentum from each backend's own gradients: the update after - before per tensor
 * (an error of the update is lr times the gradient's, so GRAD_TOL applies); frozen tensors and
 * moving statistics untouched, bit for bit. Weight decay on kernels only: a decayed bias would
 * hide its (possibly zero) gradient behind lr * wd * b. */
static void check_sgd_step(st_model *mr, st_model *md, float **before, int kink_layer,
                           const char *what) {
    st_optim_config oc = st_optim_config_default(ST_OPT_SGD);
    oc.momentum = 0.9f;
    oc.weight_decay = 1e-4f;
    oc.decay_norm_and_bias = 0;
    oc.head_lr_mult = 10.0f;
    st_optimizer *opt_ref = st_optimizer_create(mr, &oc), *opt_dev = st_optimizer_create(md, &oc);
    ST_CHECK(opt_ref && opt_dev, "%s: SGD optimizer: %s", what, st_error_get());
    double norm_ref = st_optimizer_step(opt_ref, SGD_LR);
    double norm_dev = st_optimizer_step(opt_dev, SGD_LR);
    TEST_CHECK(isfinite(norm_ref) && norm_ref > 0, "%s: reference gradient norm %g", what,
               norm_ref);
    TEST_CHECK(fabs(norm_dev - norm_ref) <= GRAD_TOL * norm_ref,
               "%s: global gradient norm %.9g vs %.9g", what, norm_dev, norm_ref);
    tensor_pair t = {ST_MALLOC((size_t)mr->n_params * sizeof(float *)),
                     ST_MALLOC((size_t)mr->n_params * sizeof(float *))};
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        float *after_ref = param_download(mr, p, p->value);
        float *after_dev = param_download(md, q, q->value);
        t.want[i] = t.got[i] = NULL;
        if (!p->grad) { /* moving statistics moved in the forward, checked there */
            if (strncmp(p->weight, "moving_", 7) != 0)
                TEST_CHECK(memcmp(after_dev, before[i], p->numel * sizeof(float)) == 0,
                           "%s: SGD changed %s/%s, which has no gradient", what, p->layer,
                           p->weight);
            free(after_ref);
            free(after_dev);
            continue;
        }
        for (size_t j = 0; j < p->numel; j++) {
            after_ref[j] -= before[i][j];
            after_dev[j] -= before[i][j];
        }
        t.want[i] = after_ref;
        t.got[i] = after_dev;
    }
    char label[200];
    snprintf(label, sizeof label, "%s SGD update", what);
    check_tensor_pairs(mr, t, kink_layer, label);
    free_pairs(t, mr->n_params);
    st_optimizer_free(opt_ref);
    st_optimizer_free(opt_dev);
}

/* Adam from identical parameters and gradients (the CPU's): updated values element by element. */
static void check_adam_step(st_model *mr, st_model *md, float **before, const char *what) {
    restore_values(mr, mr, before, what);
    restore_values(md, mr, before, what);
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        if (!p->grad || !q->grad) continue;
        float *g = param_download(mr, p, p->grad);
        st_param_upload(md, q, g, q->grad);
        free(g);
    }
    st_optim_config oc = st_optim_config_default(ST_OPT_ADAM);
    oc.weight_decay = 1e-4f;
    oc.clip_norm = 1.0f;
    oc.head_lr_mult = 10.0f;
    st_optimizer *opt_ref = st_optimizer_create(mr, &oc), *opt_dev = st_optimizer_create(md, &oc);
    ST_CHECK(opt_ref && opt_dev, "%s: Adam optimizer: %s", what, st_error_get());
    st_optimizer_step(opt_ref, ADAM_LR);
    st_optimizer_step(opt_dev, ADAM_LR);
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        float *want = param_download(mr, p, p->value), *got = param_download(md, q, q->value);
        char label[200];
        snprintf(label, sizeof label, "%s Adam: %s/%s", what, p->layer, p->weight);
        TEST_CLOSE(label, got, want, p->numel, ADAM_ATOL, ADAM_RTOL);
        if (!p->grad)
            TEST_CHECK(memcmp(got, before[i], p->numel * sizeof(float)) == 0,
                       "%s: Adam changed %s/%s, which has no gradient", what, p->layer, p->weight);
        free(want);
        free(got);
    }
    st_optimizer_free(opt_ref);
    st_optimizer_free(opt_dev);
}

/* Every materialised layer output after the training forward: within FORWARD_TOL by norm, and
 * the same zero pattern (the ReLU masks backward uses: an output is 0 on one backend only),
 * except for elements within KINK * rms of zero on both backends: there a forward difference of
 * rounding size legitimately flips a ReLU, and the gradient of everything below that layer then
 * differs by one element of dy, ~1e-2 relative in a conv5 tensor of 8192 values (measured with
 * noisy-cpu). Returns the highest such layer index, -1 when none. */
static int check_forward(st_model *mr, st_model *md, const char *what) {
    int kink_layer = -1;
    for (int i = 0; i < mr->n_layers; i++) {
        st_tensor a = st_model_layer_output(mr, i), b = st_model_layer_output(md, i);
        if (!a.data || !b.data) continue;
        size_t n = st_numel(a), far_flips = 0, near_flips = 0;
        float *want = download(ref, a.data, n), *got = download(dev, b.data, n);
        double near = KINK * norm2(want, n) / sqrt((double)n);
        for (size_t j = 0; j < n; j++) {
            if ((want[j] == 0) == (got[j] == 0)) continue; /* ReLU outputs: 0 or > 0 */
            if (fabs(want[j]) <= near && fabs(got[j]) <= near)
                near_flips++;
            else
                far_flips++;
        }
        double err = test_rel_error(got, want, n);
        const char *name = st_model_layer_name(mr, i);
        TEST_CHECK(err <= FORWARD_TOL, "%s: forward %s: relative error by norm %.3g > %.3g", what,
                   name, err, FORWARD_TOL);
        TEST_CHECK(far_flips == 0, "%s: forward %s: %zu elements far from 0 are 0 on one side",
                   what, name, far_flips);
        if (near_flips) kink_layer = i;
        free(want);
        free(got);
    }
    return kink_layer;
}

/* ---- one case ---------------------------------------------------------------------------- */

static void run_case(const step_case *c) {
    char what[160];
    snprintf(what, sizeof what, "%s freeze %s embed %d classes %d %s", c->arch, c->freeze,
             c->embed_dim, c->num_classes, c->loss == ST_LOSS_XENT ? "xent" : "triplet");
    st_model *mr = create_model(ref, c), *md = create_model(dev, c);
    check_same_init(mr, md, what);
    randomize_parameters(mr);
    copy_params_by_name(md, mr, what);
    float **before = snapshot_values(mr); /* indexed like mr->params */

    st_loss_config lc = {.kind = c->loss, .label_smoothing = 0.1f, .margin = 0.5f};
    if (c->loss == ST_LOSS_TRIPLET) lc.label_smoothing = 0;
    st_loss *lr = st_loss_create(mr, &lc), *ld = st_loss_create(md, &lc);
    ST_CHECK(lr && ld, "%s: st_loss_create: %s", what, st_error_get());
    static const int32_t class_labels[BATCH] = {1, 4, 0, 2};
    static const int32_t identity_labels[BATCH] = {3, 3, 8, 8}; /* P = 2 identities x K = 2 */
    const int32_t *labels = c->loss == ST_LOSS_XENT ? class_labels : identity_labels;

    /* A random input whose forward flips no ReLU near zero between the backends, so every
     * gradient can be compared; after MAX_ATTEMPTS the layers below the flip are left out. */
    size_t n_in = (size_t)BATCH * SIDE * SIDE * 3;
    float *images = ST_MALLOC(n_in * sizeof *images); /* preprocessed input, NHWC */
    int kink_layer = -1;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        if (attempt) { /* the forward moved the BN statistics: start again from the snapshot */
            restore_values(mr, mr, before, what);
            restore_values(md, mr, before, what);
        }
        for (size_t i = 0; i < n_in; i++) images[i] = urand(-1.5f, 1.5f);
        ref->upload(ref, mr->input.data, images, n_in * sizeof(float));
        dev->upload(dev, md->input.data, images, n_in * sizeof(float));
        st_model_forward(mr, BATCH, 1);
        st_model_forward(md, BATCH, 1);
        kink_layer = check_forward(mr, md, what);
        if (kink_layer < 0) break;
        printf("%s: input %d flips a ReLU near 0 in %s\n", what, attempt,
               st_model_layer_name(mr, kink_layer));
    }
    if (kink_layer >= 0)
        printf("%s: gradients compared above %s only\n", what,
               st_model_layer_name(mr, kink_layer));
    free(images);

    st_loss_stats sr = st_loss_compute(lr, BATCH, labels), sd = st_loss_compute(ld, BATCH, labels);
    TEST_CHECK(isfinite(sr.loss) && sr.loss > 0, "%s: reference loss %g", what, sr.loss);
    TEST_CHECK(fabs(sd.loss - sr.loss) <= LOSS_TOL * fabs(sr.loss), "%s: loss %.9g vs %.9g",
               what, sd.loss, sr.loss);
    check_moving_statistics(mr, md, before, what);

    st_model_backward(mr, BATCH);
    st_model_backward(md, BATCH);
    check_gradients(mr, md, kink_layer, what);
    check_sgd_step(mr, md, before, kink_layer, what);
    check_adam_step(mr, md, before, what);
    printf("%s: loss %.6f (cpu) %.6f (%s)\n", what, sr.loss, sd.loss, dev->name);

    free_snapshot(before, mr->n_params);
    st_loss_free(lr);
    st_loss_free(ld);
    st_model_free(mr);
    st_model_free(md);
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "cuda";
    unsetenv("SIMTUNE_CUDA_TF32"); /* the tolerances assume plain FP32 */
    if (strcmp(name, "noisy-cpu") == 0) {
        dev = open_noisy_cpu();
    } else {
        dev = st_backend_open(name, 0);
        if (!dev) { /* no device: a skip even under SIMTUNE_REQUIRE_ORACLES (see the header) */
            fprintf(stderr, "SKIP: %s\n", st_error_get());
            return 77;
        }
    }
    ref = st_backend_open("cpu", 2);
    ST_CHECK(ref, "cpu backend: %s", st_error_get());

    static const char *archs[2][2] = {{"tv_resnet18", "conv3_block2_out"},
                                      {"resnet50v2", "conv3_block4_out"}};
    const step_case heads[3] = {{NULL, NULL, 0, CLASSES, ST_LOSS_XENT},
                                {NULL, NULL, EMBED, CLASSES, ST_LOSS_XENT},
                                {NULL, NULL, EMBED, 0, ST_LOSS_TRIPLET}};
    for (int a = 0; a < 2; a++) {
        for (int f = 0; f < 2; f++) {
            for (int h = 0; h < 3; h++) {
                step_case c = heads[h];
                c.arch = archs[a][0];
                c.freeze = f ? archs[a][1] : "none";
                run_case(&c);
            }
        }
    }
    printf("largest gradient / update error: %.3g (%s), tolerance %.3g\n", worst_grad_error,
           worst_grad_where, GRAD_TOL);
    st_backend_close(ref);
    if (dev == &noisy_backend)
        st_backend_close(noisy_inner);
    else
        st_backend_close(dev);
    return test_finish("test_gpu_train_step");
}
