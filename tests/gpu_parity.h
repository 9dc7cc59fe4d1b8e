/*
 * gpu_parity.h: helpers shared by the tests that run a whole model on two backends and compare
 * them (test_gpu_train_step.c, test_gpu_model.c); static functions only, state in the
 * including test.
 *
 *   download / param_download            host copies of device buffers (caller frees)
 *   open_noisy_cpu                       a CPU backend whose convolutions add ~1e-6 relative
 *                                        noise, a stand-in for a second backend (tolerances
 *                                        checked without a GPU); one per process
 *   open_tf32_cpu                        the same wrapper rounding every convolution input to
 *                                        TF32 instead (10 mantissa bits, round to nearest even),
 *                                        what SIMTUNE_CUDA_MATH=tf32 does to cuDNN's inputs
 *   randomize_parameters                 random BN affine, biases and moving statistics, and
 *                                        damped residual branches (why: at the function)
 *   check_same_init / copy_params_by_name / snapshot_values / restore_values
 *                                        the two models' parameters, by (layer, weight)
 *   tensor_error                         relative error by norm, conv biases with an
 *                                        analytically zero gradient measured against their kernel
 *   check_tensor_pairs / check_gradients per-parameter comparisons by norm, skipping the layers
 *                                        at or below a ReLU kink; the largest error seen is kept
 *                                        in parity_worst_error / parity_worst_where
 *   check_forward                        every materialised layer output and its ReLU pattern;
 *                                        returns the highest layer with a ReLU flip near 0
 * The first model of a pair (mr) is the reference (CPU), the second (md) the backend under test.
 */
#ifndef ST_TEST_GPU_PARITY_H
#define ST_TEST_GPU_PARITY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/model/model.h"
#include "kernels/backend.h"
#include "kernels/check.h"
#include "test_util.h"

/* An element within KINK * rms of 0 on both backends may be a ReLU flipped by rounding. */
static const double KINK = 1e-3;
static double parity_worst_error; /* largest gradient / update error seen */
static char parity_worst_where[200];

static inline float urand(float lo, float hi) { return lo + (hi - lo) * (float)test_uniform(); }

static inline float *download(st_backend *be, const float *src, size_t n) {
    float *h = ST_MALLOC(n * sizeof *h);
    be->download(be, h, src, n * sizeof *h);
    return h;
}

/* Host copy (file layout, p->numel floats) of a parameter-shaped device buffer of m. */
static inline float *param_download(const st_model *m, const st_param *p, const float *device) {
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

static inline const st_conv_desc *noisy_desc(const st_conv_plan *p) {
    for (int i = 0; i < noisy_n_plans; i++)
        if (noisy_plans[i].plan == p) return &noisy_plans[i].desc;
    ST_FAIL("noisy-cpu: unknown conv plan");
}

/* x[i] += u_i * 1e-6 * rms(x), u uniform in [-1, 1): a few ulp of the tensor's scale, what a
 * different summation order leaves on a dot product of random-sign terms. */
static inline void add_rounding_noise(float *x, size_t n) {
    float *h = download(noisy_inner, x, n);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)h[i] * h[i];
    float amplitude = (float)(1e-6 * sqrt(ss / (double)n));
    for (size_t i = 0; i < n; i++) h[i] += amplitude * urand(-1, 1);
    noisy_inner->upload(noisy_inner, x, h, n * sizeof *h);
    free(h);
}

static inline st_conv_plan *noisy_conv_plan(st_backend *be, const st_conv_desc *d) {
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

static int noisy_tf32; /* open_tf32_cpu: round the inputs instead of perturbing the outputs */

/* A copy of x (n floats) rounded to TF32: 10 explicit mantissa bits, round to nearest even (the
 * conversion cuBLAS and cuDNN apply in TF32 mode); the caller frees it with noisy_inner->free.
 * Without noisy_tf32: x itself. */
static inline const float *tf32_input(const float *x, size_t n) {
    if (!noisy_tf32) return x;
    float *h = download(noisy_inner, x, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &h[i], sizeof bits);
        if ((bits & 0x7f800000u) != 0x7f800000u) /* finite: round the low 13 bits away */
            bits = (bits + 0x0fffu + ((bits >> 13) & 1u)) & ~0x1fffu;
        memcpy(&h[i], &bits, sizeof bits);
    }
    float *r = noisy_inner->alloc(noisy_inner, n * sizeof *r);
    noisy_inner->upload(noisy_inner, r, h, n * sizeof *h);
    free(h);
    return r;
}

static inline void tf32_input_free(const float *copy, const float *x) {
    if (copy != x) noisy_inner->free(noisy_inner, (void *)copy);
}

static inline void noisy_conv_forward(st_backend *be, st_conv_plan *p, const float *x,
                                      const float *w, const float *bias, float *y) {
    (void)be;
    const st_conv_desc *d = noisy_desc(p);
    const float *xr = tf32_input(x, (size_t)d->n * d->h * d->w * d->c);
    const float *wr = tf32_input(w, noisy_inner->conv_weights_numel(noisy_inner, p));
    noisy_inner->conv_forward(noisy_inner, p, xr, wr, bias, y);
    tf32_input_free(xr, x);
    tf32_input_free(wr, w);
    if (!noisy_tf32) add_rounding_noise(y, (size_t)d->n * d->p * d->q * d->k);
}

static inline void noisy_conv_backward_data(st_backend *be, st_conv_plan *p,
                                            const float *dy, const float *w, float *dx) {
    (void)be;
    const st_conv_desc *d = noisy_desc(p);
    const float *dyr = tf32_input(dy, (size_t)d->n * d->p * d->q * d->k);
    const float *wr = tf32_input(w, noisy_inner->conv_weights_numel(noisy_inner, p));
    noisy_inner->conv_backward_data(noisy_inner, p, dyr, wr, dx);
    tf32_input_free(dyr, dy);
    tf32_input_free(wr, w);
    if (!noisy_tf32) add_rounding_noise(dx, (size_t)d->n * d->h * d->w * d->c);
}

/* TF32 rounds x and dy of the filter gradient, not the bias gradient (a column sum of dy in
 * FP32/double on both backends): dbias comes from a second call on the unrounded dy. */
static inline void noisy_conv_backward_filter(st_backend *be, st_conv_plan *p,
                                              const float *x, const float *dy, float *dw,
                                              float *dbias) {
    (void)be;
    const st_conv_desc *d = noisy_desc(p);
    const size_t nw = noisy_inner->conv_weights_numel(noisy_inner, p);
    if (noisy_tf32 && dbias) noisy_inner->conv_backward_filter(noisy_inner, p, x, dy, dw, dbias);
    const float *xr = tf32_input(x, (size_t)d->n * d->h * d->w * d->c);
    const float *dyr = tf32_input(dy, (size_t)d->n * d->p * d->q * d->k);
    noisy_inner->conv_backward_filter(noisy_inner, p, xr, dyr, dw, noisy_tf32 ? NULL : dbias);
    tf32_input_free(xr, x);
    tf32_input_free(dyr, dy);
    if (noisy_tf32) return;
    add_rounding_noise(dw, nw); /* backend layout */
    if (dbias) add_rounding_noise(dbias, (size_t)d->k);
}

/* The CPU backend's members, with the four convolution members wrapped. The CPU ops receive
 * the copy as `be` and only read its ctx and thread count, which are the original's. */
static inline st_backend *open_noisy_cpu(void) {
    noisy_inner = st_backend_open("cpu", 2);
    ST_CHECK(noisy_inner, "cpu backend: %s", st_error_get());
    noisy_backend = *noisy_inner;
    noisy_backend.conv_plan = noisy_conv_plan;
    noisy_backend.conv_forward = noisy_conv_forward;
    noisy_backend.conv_backward_data = noisy_conv_backward_data;
    noisy_backend.conv_backward_filter = noisy_conv_backward_filter;
    return &noisy_backend;
}

static inline st_backend *open_tf32_cpu(void) {
    noisy_tf32 = 1;
    return open_noisy_cpu();
}

static inline int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* 1 for the tensor that ends a residual branch: the branch's last BN gamma (_3_bn, or _2_bn of
 * a basic block) or the v2 _3_conv kernel, which has no BN after it. */
static inline int ends_residual_branch(st_model *m, const st_param *p) {
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
static inline void randomize_parameters(st_model *m) {
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

static inline st_param *twin_param(st_model *m, const st_param *p, const char *what) {
    st_param *q = st_model_find_param(m, p->layer, p->weight);
    ST_CHECK(q && q->numel == p->numel, "%s: %s/%s missing or of another size on %s", what,
             p->layer, p->weight, m->backend->name);
    return q;
}

/* The same seed gives the same parameters on both backends (the init is host-side, so they are
 * bit-identical); checked on freshly created models. */
static inline void check_same_init(st_model *a, st_model *b, const char *what) {
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
/* The reference model's gradients into the twin model's, so both step from identical ones. */
static inline void copy_gradients(st_model *mr, st_model *md, const char *what) {
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        if (!p->grad || !q->grad) continue;
        float *g = param_download(mr, p, p->grad);
        st_param_upload(md, q, g, q->grad);
        free(g);
    }
}

static inline void copy_params_by_name(st_model *dst, st_model *src, const char *what) {
    for (int i = 0; i < src->n_params; i++) {
        st_param *p = &src->params[i], *q = twin_param(dst, p, what);
        float *h = param_download(src, p, p->value);
        st_param_upload(dst, q, h, q->value);
        free(h);
    }
    st_model_weights_changed(dst);
}

/* Host copies of every parameter value, indexed like m->params. */
static inline float **snapshot_values(st_model *m) {
    float **s = ST_MALLOC((size_t)m->n_params * sizeof *s);
    for (int i = 0; i < m->n_params; i++)
        s[i] = param_download(m, &m->params[i], m->params[i].value);
    return s;
}

/* The values of snapshot s (indexed like src->params) into m, by (layer, weight). */
static inline void restore_values(st_model *m, const st_model *src, float **s, const char *what) {
    for (int i = 0; i < src->n_params; i++) {
        st_param *q = twin_param(m, &src->params[i], what);
        st_param_upload(m, q, s[i], q->value);
    }
    st_model_weights_changed(m);
}

static inline void free_snapshot(float **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}
static inline double norm2(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* ||got - want|| / ||want||, except for a conv bias whose reference is below 1e-4 of its layer's
 * kernel tensor (kernel_want, kernel_n): an analytically zero gradient (every path runs through
 * a BN with batch statistics, which removes per-channel shifts) where both backends hold float
 * rounding noise (~1e-7 of the kernel's); it is measured against the kernel's norm instead. A
 * true bias gradient is ~1e-2 of the kernel's or more, far above the switch. */
static inline double tensor_error(const st_param *p, const float *got, const float *want,
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

static inline void note_error(double err, double tol, const char *what, const st_param *p) {
    if (err > parity_worst_error) {
        parity_worst_error = err;
        /* bounded fields: 120 + 40 + 30 + 2 separators fit the 200 bytes */
        snprintf(parity_worst_where, sizeof parity_worst_where, "%.120s %.40s/%.30s", what,
                 p->layer, p->weight);
    }
    TEST_CHECK(err <= tol, "%s: %s/%s: relative error by norm %.3g > %.3g", what, p->layer,
               p->weight, err, tol);
}

/* Host arrays per parameter: grad (or update) of the reference and of the device model. */
typedef struct tensor_pair {
    float **want, **got; /* indexed like the CPU model's params; NULL where no gradient */
} tensor_pair;

/* Parameters of layers at or below kink_layer (see check_forward) are not compared: a ReLU
 * there took a different branch on the two backends, legitimately. */
static inline void check_tensor_pairs(st_model *mr, tensor_pair t, int kink_layer, double tol,
                                      const char *what) {
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
        note_error(tensor_error(p, t.got[i], t.want[i], kernel_want, kernel_n), tol, what, p);
    }
}

static inline void free_pairs(tensor_pair t, int n) {
    for (int i = 0; i < n; i++) {
        free(t.want[i]);
        free(t.got[i]);
    }
    free(t.want);
    free(t.got);
}

/* Every trainable parameter's gradient; the frozen set must be the same on both. */
static inline void check_gradients(st_model *mr, st_model *md, int kink_layer, double tol,
                                   const char *what) {
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
    check_tensor_pairs(mr, t, kink_layer, tol, label);
    free_pairs(t, mr->n_params);
}

/* Every materialised layer output of the first `rows` images after the training forward (rows
 * of a partial batch beyond them hold an earlier pass): within tol by norm, and
 * the same zero pattern (the ReLU masks backward uses: an output is 0 on one backend only),
 * except for elements within KINK * rms of zero on both backends: there a forward difference of
 * rounding size legitimately flips a ReLU, and the gradient of everything below that layer then
 * differs by one element of dy, ~1e-2 relative in a conv5 tensor of 8192 values (measured with
 * noisy-cpu). Returns the highest such layer index, -1 when none. */
static inline int check_forward(st_model *mr, st_model *md, int rows, double tol,
                                const char *what) {
    int kink_layer = -1;
    for (int i = 0; i < mr->n_layers; i++) {
        st_tensor a = st_model_layer_output(mr, i), b = st_model_layer_output(md, i);
        if (!a.data || !b.data) continue;
        size_t n = st_numel(a) / (size_t)a.n * (size_t)rows, far_flips = 0, near_flips = 0;
        float *want = download(mr->backend, a.data, n), *got = download(md->backend, b.data, n);
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
        TEST_CHECK(err <= tol, "%s: forward %s: relative error by norm %.3g > %.3g", what, name,
                   err, tol);
        TEST_CHECK(far_flips == 0, "%s: forward %s: %zu elements far from 0 are 0 on one side",
                   what, name, far_flips);
        if (near_flips) kink_layer = i;
        free(want);
        free(got);
    }
    return kink_layer;
}
#endif
