/*
 * test_conv_layout.c: conv kernels in the backend's own layout (kernels/backend.h, convolution
 * entries), on the CPU backend and, when a device exists, the CUDA backend.
 *
 * For ResNet-like geometries and one with channel counts that oneDNN's blocked layouts pad:
 *   - import (HWIO -> backend layout) then export gives back the HWIO bits exactly;
 *   - padding: the backend layout holds conv_weights_numel >= R*S*C*K floats; the extra ones are
 *     zero after import, after a backward-filter into a buffer pre-filled with NaN, and after an
 *     Adam step on those weights and that gradient (the optimizer runs over the whole buffer);
 *   - one weight buffer serves every batch size: a plan at another batch size (and the ReLU
 *     variant) reports the same layout size, and its forward and backward-data, reading the
 *     weights imported through the full-batch plan, are BIT-identical to those of a fresh
 *     backend whose first plan of the geometry has that batch size (so it chose the layout for
 *     it, as every plan did before layouts were fixed per geometry);
 *   - CPU: the batch-norm fold, done in the backend layout, gives exactly w * scale[k] (the
 *     scale from kernels/math/batchnorm.h), the product a loop over HWIO computes. (The CUDA
 *     fold is compared with the CPU's in test_gpu_ops.)
 * Exact comparisons (memcmp) throughout: a layout conversion is a permutation, and the same
 * primitive on the same values must give the same bits. Buffers are device memory, reached
 * through upload/download, so the test reads what a user of the backend reads.
 */
#include <string.h>

#include "kernels/backend.h"
#include "kernels/check.h"
#include "kernels/math/batchnorm.h"
#include "test_util.h"

typedef struct {
    const char *name;
    st_conv_desc d; /* n is the full batch */
    int partial_n;  /* another batch size */
} geometry_case;

static float *host_random(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = (float)(2 * test_uniform() - 1);
    return p;
}

static float *device_from(st_backend *be, const float *host, size_t n) {
    float *p = be->alloc(be, n * sizeof *p);
    be->upload(be, p, host, n * sizeof *p);
    return p;
}

static float *device_nan(st_backend *be, size_t n) {
    float *p = be->alloc(be, n * sizeof *p);
    be->fill(be, p, NAN, n);
    return p;
}

static float *host_of(st_backend *be, const float *dev, size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) abort();
    be->download(be, p, dev, n * sizeof *p);
    return p;
}

static size_t kernel_numel(const st_conv_desc *d) { return (size_t)d->r * d->s * d->c * d->k; }

/* Padding positions of the layout: import all-ones HWIO into NaN; real entries read 1, padding
 * 0. Returns a host mask (1 = padding) and checks nothing else is there. */
static unsigned char *padding_mask(st_backend *be, st_conv_plan *p, const geometry_case *g) {
    size_t n = kernel_numel(&g->d), nb = be->conv_weights_numel(be, p);
    float *ones = malloc(n * sizeof *ones);
    if (!ones) abort();
    for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
    float *wb = device_nan(be, nb);
    be->conv_weights_import(be, p, ones, wb);
    float *got = host_of(be, wb, nb);
    unsigned char *mask = calloc(nb, 1);
    size_t real = 0, pad = 0;
    for (size_t i = 0; i < nb; i++) {
        real += got[i] == 1.0f;
        pad += (mask[i] = got[i] == 0.0f);
    }
    TEST_CHECK(real == n && pad == nb - n, "%s: import wrote %zu ones and %zu zeros, want %zu, %zu",
               g->name, real, pad, n, nb - n);
    be->free(be, wb);
    free(got);
    free(ones);
    return mask;
}

static void check_padding_zero(const char *what, const geometry_case *g, const float *host,
                               const unsigned char *mask, size_t nb) {
    size_t bad = 0;
    for (size_t i = 0; i < nb; i++) bad += mask[i] && host[i] != 0.0f;
    TEST_CHECK(bad == 0, "%s: %s: %zu padding entries not zero", g->name, what, bad);
}

static void check_round_trip(st_backend *be, st_conv_plan *p, const geometry_case *g) {
    size_t n = kernel_numel(&g->d), nb = be->conv_weights_numel(be, p);
    TEST_CHECK(nb >= n, "%s: layout of %zu floats < R*S*C*K = %zu", g->name, nb, n);
    float *hwio = host_random(n), *back = malloc(n * sizeof *back);
    float *wb = device_nan(be, nb);
    be->conv_weights_import(be, p, hwio, wb);
    be->conv_weights_export(be, p, wb, back);
    TEST_CHECK(memcmp(hwio, back, n * sizeof *back) == 0, "%s: import/export changed the weights",
               g->name);
    be->free(be, wb);
    free(hwio);
    free(back);
}

/* backward-filter and one Adam step keep the padding at zero */
static void check_padding_kept(st_backend *be, st_conv_plan *p, const geometry_case *g) {
    const st_conv_desc *d = &g->d;
    size_t nb = be->conv_weights_numel(be, p), nx = (size_t)d->n * d->h * d->w * d->c;
    size_t ny = (size_t)d->n * d->p * d->q * d->k, n = kernel_numel(d);
    unsigned char *mask = padding_mask(be, p, g);
    float *hx = host_random(nx), *hdy = host_random(ny), *hw = host_random(n);
    float *x = device_from(be, hx, nx), *dy = device_from(be, hdy, ny);
    float *wb = device_nan(be, nb), *dwb = device_nan(be, nb);
    float *m = be->alloc(be, nb * sizeof(float)), *v = be->alloc(be, nb * sizeof(float));
    be->conv_weights_import(be, p, hw, wb);
    be->conv_backward_filter(be, p, x, dy, dwb, NULL);
    float *got = host_of(be, dwb, nb);
    check_padding_zero("backward-filter", g, got, mask, nb);
    free(got);
    st_optim_desc adam = {.kind = ST_OPT_ADAM, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f,
                          .eps = 1e-8f, .weight_decay = 1e-4f, .step = 1};
    be->optim_step(be, &adam, wb, dwb, m, v, nb, NULL);
    got = host_of(be, wb, nb);
    check_padding_zero("Adam step", g, got, mask, nb);
    free(got);
    float *parts[] = {x, dy, wb, dwb, m, v};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) be->free(be, parts[i]);
    free(hx);
    free(hdy);
    free(hw);
    free(mask);
}

/* Forward and backward-data at d's batch size reading the kernel wb (backend layout) and the
 * first d->n images of hx / hdy; host results in y, dx. */
static void run_batch(st_backend *be, const st_conv_desc *d, const float *hx, const float *hdy,
                      const float *wb, float **y, float **dx) {
    st_conv_plan *p = be->conv_plan(be, d);
    size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->p * d->q * d->k;
    float *x = device_from(be, hx, nx), *dy = device_from(be, hdy, ny);
    float *dy_out = device_nan(be, ny), *dx_dev = device_nan(be, nx);
    be->conv_forward(be, p, x, wb, NULL, dy_out);
    be->conv_backward_data(be, p, dy, wb, dx_dev);
    *y = host_of(be, dy_out, ny);
    *dx = host_of(be, dx_dev, nx);
    float *parts[] = {x, dy, dy_out, dx_dev};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) be->free(be, parts[i]);
}

/* One buffer, imported through the full-batch plan, serves the partial batch and the ReLU
 * variant; the partial batch's results equal those of a backend whose first plan of this
 * geometry is the partial one. */
static void check_batch_sizes(st_backend *be, const char *backend_name, st_conv_plan *full,
                              const geometry_case *g) {
    st_conv_desc part = g->d, relu = g->d;
    part.n = g->partial_n;
    relu.relu = 1;
    size_t nb = be->conv_weights_numel(be, full), n = kernel_numel(&g->d);
    TEST_CHECK(be->conv_weights_numel(be, be->conv_plan(be, &part)) == nb &&
                   be->conv_weights_numel(be, be->conv_plan(be, &relu)) == nb,
               "%s: plans of one geometry report different layout sizes", g->name);
    size_t nx = (size_t)g->d.n * g->d.h * g->d.w * g->d.c;
    size_t ny = (size_t)g->d.n * g->d.p * g->d.q * g->d.k;
    float *hx = host_random(nx), *hdy = host_random(ny), *hw = host_random(n);
    float *wb = device_nan(be, nb);
    be->conv_weights_import(be, full, hw, wb);
    float *y, *dx, *y_own, *dx_own;
    run_batch(be, &part, hx, hdy, wb, &y, &dx);

    st_backend *fresh = st_backend_open(backend_name, 0);
    st_conv_plan *own = fresh->conv_plan(fresh, &part); /* chooses the layout for this batch */
    float *wb_own = device_nan(fresh, fresh->conv_weights_numel(fresh, own));
    fresh->conv_weights_import(fresh, own, hw, wb_own);
    run_batch(fresh, &part, hx, hdy, wb_own, &y_own, &dx_own);
    size_t py = (size_t)part.n * part.p * part.q * part.k;
    size_t px = (size_t)part.n * part.h * part.w * part.c;
    TEST_CHECK(memcmp(y, y_own, py * sizeof *y) == 0,
               "%s: forward at batch %d with the shared weights differs from its own layout's",
               g->name, part.n);
    TEST_CHECK(memcmp(dx, dx_own, px * sizeof *dx) == 0,
               "%s: backward-data at batch %d with the shared weights differs from its own "
               "layout's", g->name, part.n);
    fresh->free(fresh, wb_own);
    st_backend_close(fresh);
    be->free(be, wb);
    float *host[] = {hx, hdy, hw, y, dx, y_own, dx_own};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

static void check_fold_exact(st_backend *be, st_conv_plan *p, const geometry_case *g) {
    const st_conv_desc *d = &g->d;
    size_t n = kernel_numel(d), nb = be->conv_weights_numel(be, p), k = (size_t)d->k;
    float *hw = host_random(n), *gamma = host_random(k), *beta = host_random(k);
    float *mean = host_random(k), *var = host_random(k), *want = malloc(n * sizeof *want);
    for (size_t i = 0; i < k; i++) var[i] = 0.5f + var[i] * var[i];
    for (size_t i = 0; i < n; i++)
        want[i] = hw[i] * st_bn_scale(gamma[i % k], st_bn_rstd(var[i % k], 1e-3f)); /* HWIO */
    float *w = device_nan(be, nb), *w_out = device_nan(be, nb), *b_out = device_nan(be, k);
    float *dg = device_from(be, gamma, k), *db = device_from(be, beta, k);
    float *dm = device_from(be, mean, k), *dv = device_from(be, var, k);
    be->conv_weights_import(be, p, hw, w);
    be->conv_fold_bn(be, p, w, NULL, dg, db, dm, dv, 1e-3f, w_out, b_out);
    float *got = malloc(n * sizeof *got);
    be->conv_weights_export(be, p, w_out, got);
    TEST_CHECK(memcmp(got, want, n * sizeof *got) == 0, "%s: folded weights differ from w * scale",
               g->name);
    float *dev[] = {w, w_out, b_out, dg, db, dm, dv};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) be->free(be, dev[i]);
    float *host[] = {hw, gamma, beta, mean, var, want, got};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

static void check_backend(const char *backend_name) {
    st_backend *be = st_backend_open(backend_name, 0);
    if (!be) {
        printf("%s backend not available: %s\n", backend_name, st_error_get());
        TEST_CHECK(!test_gpu_required(), "%s backend not available, and SIMTUNE_REQUIRE_GPU=1 "
                   "forbids skipping its part", backend_name);
        return;
    }
    geometry_case cases[] = {
        {"3x3 64->64 (ResNet body)",
         {.n = 8, .h = 14, .w = 14, .c = 64, .k = 64, .r = 3, .s = 3, .stride_h = 1,
          .stride_w = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1},
         3},
        {"1x1 s2 64->128 (projection)",
         {.n = 8, .h = 14, .w = 14, .c = 64, .k = 128, .r = 1, .s = 1, .stride_h = 2,
          .stride_w = 2},
         5},
        {"7x7 s2 3->64 (stem, asym pad)",
         {.n = 4, .h = 23, .w = 23, .c = 3, .k = 64, .r = 7, .s = 7, .stride_h = 2,
          .stride_w = 2, .pad_top = 3, .pad_bottom = 2, .pad_left = 3, .pad_right = 2},
         1},
        {"3x3 6->10 (padded channels)",
         {.n = 4, .h = 9, .w = 9, .c = 6, .k = 10, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1,
          .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1},
         3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        geometry_case *g = &cases[i];
        st_conv_desc_finish(&g->d);
        st_conv_plan *p = be->conv_plan(be, &g->d);
        printf("%s %-32s %zu floats for %zu weights\n", backend_name, g->name,
               be->conv_weights_numel(be, p), kernel_numel(&g->d));
        check_round_trip(be, p, g);
        check_padding_kept(be, p, g);
        check_batch_sizes(be, backend_name, p, g);
        if (strcmp(backend_name, "cpu") == 0) check_fold_exact(be, p, g);
    }
    st_backend_close(be);
}

int main(void) {
    check_backend("cpu");
    check_backend("cuda"); /* skipped without a device or a CUDA build */
    return test_finish("test_conv_layout");
}
