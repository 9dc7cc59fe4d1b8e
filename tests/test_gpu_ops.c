/*
 * test_gpu_ops.c: every op of the CUDA backend against the CPU backend on the same random
 * inputs (ggml's test-backend-ops idea): each op runs on both backends, results are downloaded
 * and compared. Backward ops get the SAME forward results (the CPU's y, probs, norms, uploaded
 * to both), so each op is checked on its own. Labelled `gpu`; exits 77 (skipped) when
 * st_backend_open("cuda") fails: no device, or a build without CUDA. The missing device is not a
 * missing oracle, so this skip stands even under SIMTUNE_REQUIRE_ORACLES=1. Every case runs in
 * the default math mode (SIMTUNE_CUDA_MATH unset: fp32, the test unsets it); the GEMM, dense and
 * conv cases then run again with the backend reopened in SIMTUNE_CUDA_MATH=tf32, at the TF32
 * tolerances below. Before any of it, the math-mode refusals (an unknown SIMTUNE_CUDA_MATH, the
 * replaced SIMTUNE_CUDA_TF32) are checked: they fail before a device is looked for, so that part
 * runs, and fails rather than skips, on machines without a GPU.
 * A training-step parity test (whole ResNet step on both backends) comes with the trainer.
 *
 * Usage: test_gpu_ops [BACKEND]   BACKEND defaults to cuda; `cpu` runs the harness against
 * itself (a sanity check of this file on machines without a GPU).
 *
 * Tolerances (why each value):
 *   exact (0)        ops that only move or compare values (copy, fill, ReLU, add, max pools
 *                    and their backward gathers, which add the same terms in the same order,
 *                    top-k): any difference is a bug.
 *   TOL_ELEM 1e-6    per-element formulas shared through kernels/math (BN fold, optimizer,
 *                    BN apply, GeM, l2norm, softmax): nvcc contracts a*b+c into one FMA where
 *                    gcc (ISO C, -ffp-contract=off) rounds twice, and CUDA's expf/powf/sqrtf
 *                    differ from glibc's by <= 2 ulp; a few ulp (6e-8 each) stay far below 1e-6
 *                    relative plus 1e-7 absolute near zero.
 *   TOL_OPT 1e-5     five optimizer steps compound those ulp differences (Adam's division by
 *                    sqrt(v) amplifies them by ~10x when v is small).
 *   TOL_GEMM 1e-5    by norm: FP32 GEMM/conv/BN reductions with different blocking; the error of
 *                    a dot product of k terms is ~ sqrt(k) * 6e-8 relative, < 2e-6 for k <= 1000.
 *   TOL_REDUCE 5e-5  by norm: backward-filter and BN/bias gradients sum over N*P*Q ~ 10^3 terms
 *                    per output and cancel (random-sign dy), so relative errors of the small
 *                    results are larger; a wrong index or missing term gives errors ~1e-1 .. 1.
 *   TOL_TRIPLET 1e-5 by norm: both backends sum the distances directly in the same lane order
 *                    (kernels/math/triplet.h); nvcc contracts diff * diff + acc into FMA, gcc
 *                    (ISO C) does not, so each distance differs by a few ulp (~1e-6 relative at
 *                    D = 2048), which the gradient (f_a - f_j) / D carries over.
 *   TF32 mode (cuBLAS COMPUTE_32F_FAST_TF32, cuDNN DEFAULT math) against the CPU's FP32:
 *   TOL_TF32 5e-3    by norm, GEMM/dense/conv forward and backward data. TF32 keeps 10 of FP32's
 *                    23 mantissa bits: rounding an input costs up to u = 2^-11 = 4.9e-4
 *                    relative (rms u/sqrt(3)), a product of two rounded inputs ~ sqrt(2) u/sqrt(3)
 *                    rms = 4e-4. A K-term dot product adds K such independent errors: sqrt(K) *
 *                    4e-4 * |term|, the elementwise sqrt(K) * 2^-11 bound relative to one term.
 *                    The random-sign inputs here make the sum itself ~ sqrt(K) * |term|, so by
 *                    norm the relative error is ~4e-4 whatever K (301 for the GEMM, up to 147
 *                    for the convs); 5e-3 is a 12x margin and still 20x below a wrong index or
 *                    a missing term (1e-1 .. 1). FP32 accumulation error (TOL_GEMM) is negligible.
 *   TOL_TF32_REDUCE 1e-2 by norm, conv backward filter: the same per-product error over
 *                    N*P*Q terms, but the algorithms split that long reduction into partial
 *                    sums that cancel (random-sign dy), so, as for TOL_REDUCE vs TOL_GEMM, the
 *                    small results carry a larger relative error: 2x TOL_TF32.
 *                    Bias gradients (conv dbias, dense db) are column sums in double, untouched
 *                    by the mode: they keep their FP32 tolerances.
 *   1e-5 elementwise, stated at the call: BN outputs (y = x * scale + shift with |x| ~ 3 and
 *                    |y| ~ 1 amplifies a 1-ulp difference of scale or shift 3-5x; rstd and
 *                    running_var pass through a float rounding of a double and a sqrt), softmax
 *                    probabilities (the CPU sums 1000 exponentials in float, ~2e-6 typical
 *                    relative error, the GPU in double), GeM backward (three powf per element).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/check.h"
#include "test_util.h"

#define TOL_ELEM 1e-6
#define TOL_OPT 1e-5
#define TOL_GEMM 1e-5
#define TOL_REDUCE 5e-5
#define TOL_TRIPLET 1e-5
#define TOL_TF32 5e-3
#define TOL_TF32_REDUCE 1e-2

/* The tolerances of the cases that run in both math modes (GEMM, dense, conv). */
typedef struct {
    const char *mode; /* SIMTUNE_CUDA_MATH of the backend under test, for the messages */
    double gemm;      /* products: GEMM, dense, conv forward and backward data */
    double reduce;    /* conv backward filter */
} math_tolerances;

static const math_tolerances fp32_tolerances = {"fp32", TOL_GEMM, TOL_REDUCE};
static const math_tolerances tf32_tolerances = {"tf32", TOL_TF32, TOL_TF32_REDUCE};
static math_tolerances tol = {"fp32", TOL_GEMM, TOL_REDUCE}; /* the mode under test */

static st_backend *ref; /* CPU backend, the reference */
static st_backend *dev; /* backend under test */

static float urand(float lo, float hi) { return lo + (hi - lo) * (float)test_uniform(); }

static float *host_random(size_t n, float lo, float hi) {
    float *h = ST_MALLOC(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = urand(lo, hi);
    return h;
}

/* The same buffer on both backends. */
typedef struct {
    void *ref, *dev;
    size_t bytes;
} twin;

static twin twin_bytes(const void *host, size_t bytes) {
    twin t = {ref->alloc(ref, bytes), dev->alloc(dev, bytes), bytes};
    if (host) {
        ref->upload(ref, t.ref, host, bytes);
        dev->upload(dev, t.dev, host, bytes);
    }
    return t;
}

static twin twin_floats(const float *host, size_t n) { return twin_bytes(host, n * sizeof(float)); }

/* Host copy of the reference side uploaded over the device side (feeds backward the CPU's y). */
static void twin_share_ref(twin t) {
    void *h = ST_MALLOC(t.bytes);
    ref->download(ref, h, t.ref, t.bytes);
    dev->upload(dev, t.dev, h, t.bytes);
    free(h);
}

static void twin_free(twin t) {
    ref->free(ref, t.ref);
    dev->free(dev, t.dev);
}

#define R(t) ((float *)(t).ref)
#define D(t) ((float *)(t).dev)

static void fetch(twin t, void **href, void **hdev) {
    *href = ST_MALLOC(t.bytes);
    *hdev = ST_MALLOC(t.bytes);
    ref->download(ref, *href, t.ref, t.bytes);
    dev->download(dev, *hdev, t.dev, t.bytes);
}

/* Elementwise |dev - ref| <= atol + rtol |ref|. */
static void compare(const char *name, twin t, double atol, double rtol) {
    void *r, *d;
    fetch(t, &r, &d);
    TEST_CLOSE(name, (const float *)d, (const float *)r, t.bytes / sizeof(float), atol, rtol);
    free(r);
    free(d);
}

/* ||dev - ref|| / ||ref|| <= tol. */
static void compare_norm(const char *name, twin t, double limit) {
    void *r, *d;
    fetch(t, &r, &d);
    double err = test_rel_error((const float *)d, (const float *)r, t.bytes / sizeof(float));
    TEST_CHECK(err <= limit, "%s (%s math): relative error by norm %.3g > %.3g", name, tol.mode,
               err, limit);
    free(r);
    free(d);
}

static void compare_exact_bytes(const char *name, twin t) {
    void *r, *d;
    fetch(t, &r, &d);
    TEST_CHECK(memcmp(r, d, t.bytes) == 0, "%s: device bytes differ from the CPU's", name);
    free(r);
    free(d);
}

/* ---- memory and BLAS-1 --------------------------------------------------------------- */

static void test_memory(void) {
    /* 5M floats = 20 MB: more than two staging halves, so the chunked paths run */
    const size_t n = 5u << 20;
    float *h = host_random(n, -2.0f, 2.0f);
    twin zero = twin_floats(NULL, 1000);
    compare("alloc is zeroed", zero, 0, 0);
    twin a = twin_floats(h, n), b = twin_floats(NULL, n);
    compare("upload/download round trip", a, 0, 0);
    ref->copy(ref, b.ref, a.ref, n * sizeof(float));
    dev->copy(dev, b.dev, a.dev, n * sizeof(float));
    compare("copy", b, 0, 0);
    ref->scale(ref, R(b), 0.75f, n);
    dev->scale(dev, D(b), 0.75f, n);
    ref->axpy(ref, R(b), -1.5f, R(a), n);
    dev->axpy(dev, D(b), -1.5f, D(a), n);
    compare("scale + axpy", b, 1e-7, TOL_ELEM);
    double ss_ref = ref->sum_squares(ref, R(a), n), ss_dev = dev->sum_squares(dev, D(a), n);
    /* both sum in double, in different orders: 5M positive terms, each addition off by at most
     * 1.1e-16 relative, so even the worst case of sequential partial sums stays below 1e-9 */
    TEST_CHECK(fabs(ss_dev - ss_ref) <= 1e-9 * ss_ref, "sum_squares %.17g vs %.17g", ss_dev,
               ss_ref);
    TEST_CHECK(dev->all_finite(dev, D(a), n) == 1, "all_finite on finite data");
    const float bad[2] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++) {
        dev->upload(dev, D(a) + n - 7, &bad[i], sizeof(float));
        TEST_CHECK(dev->all_finite(dev, D(a), n) == 0, "all_finite misses %g", (double)bad[i]);
    }
    ref->fill(ref, R(zero), 3.25f, 1000);
    dev->fill(dev, D(zero), 3.25f, 1000);
    compare("fill", zero, 0, 0);
    twin_free(zero);
    twin_free(a);
    twin_free(b);
    free(h);
}

/* ---- GEMM and dense ------------------------------------------------------------------- */

static void test_gemm(void) {
    const int m = 37, n = 53, k = 301, pad = 3; /* leading dimensions padded: lda > columns */
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
            int lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
            float *ha = host_random((size_t)a_rows * lda, -1, 1);
            float *hb = host_random((size_t)b_rows * ldb, -1, 1);
            float *hc = host_random((size_t)m * ldc, -1, 1);
            twin a = twin_floats(ha, (size_t)a_rows * lda);
            twin b = twin_floats(hb, (size_t)b_rows * ldb);
            twin c = twin_floats(hc, (size_t)m * ldc);
            ref->gemm(ref, ta, tb, m, n, k, 0.5f, R(a), lda, R(b), ldb, -2.0f, R(c), ldc);
            dev->gemm(dev, ta, tb, m, n, k, 0.5f, D(a), lda, D(b), ldb, -2.0f, D(c), ldc);
            char name[64];
            snprintf(name, sizeof name, "gemm trans_a=%d trans_b=%d", ta, tb);
            compare_norm(name, c, tol.gemm);
            twin_free(a);
            twin_free(b);
            twin_free(c);
            free(ha);
            free(hb);
            free(hc);
        }
    }
}

static void test_dense(void) {
    const int n = 12, in = 200, out = 33;
    float *hx = host_random((size_t)n * in, -1, 1), *hw = host_random((size_t)in * out, -1, 1);
    float *hb = host_random(out, -1, 1), *hdy = host_random((size_t)n * out, -1, 1);
    twin x = twin_floats(hx, (size_t)n * in), w = twin_floats(hw, (size_t)in * out);
    twin b = twin_floats(hb, out), y = twin_floats(NULL, (size_t)n * out);
    twin dy = twin_floats(hdy, (size_t)n * out), dx = twin_floats(NULL, (size_t)n * in);
    twin dw = twin_floats(NULL, (size_t)in * out), db = twin_floats(NULL, out);
    ref->dense_forward(ref, n, in, out, R(x), R(w), R(b), R(y));
    dev->dense_forward(dev, n, in, out, D(x), D(w), D(b), D(y));
    compare_norm("dense forward", y, tol.gemm);
    ref->dense_backward(ref, n, in, out, R(x), R(w), R(dy), R(dx), R(dw), R(db));
    dev->dense_backward(dev, n, in, out, D(x), D(w), D(dy), D(dx), D(dw), D(db));
    compare_norm("dense dx", dx, tol.gemm);
    compare_norm("dense dw", dw, tol.gemm);
    compare_norm("dense db", db, TOL_GEMM);
    twin parts[] = {x, w, b, y, dy, dx, dw, db};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hx);
    free(hw);
    free(hb);
    free(hdy);
}

/* ---- convolution ---------------------------------------------------------------------- */

/* A conv kernel on both backends, each in its own layout (imported from host HWIO, or left
 * zero when hwio is NULL); bytes is unused, the two sizes may differ. */
static twin twin_kernel(st_conv_plan *pr, st_conv_plan *pd, const float *hwio) {
    twin t = {ref->alloc(ref, ref->conv_weights_numel(ref, pr) * sizeof(float)),
              dev->alloc(dev, dev->conv_weights_numel(dev, pd) * sizeof(float)), 0};
    if (hwio) {
        ref->conv_weights_import(ref, pr, hwio, t.ref);
        dev->conv_weights_import(dev, pd, hwio, t.dev);
    }
    return t;
}

/* The HWIO values (nw floats) of a kernel twin as a plain twin, for the comparisons. */
static twin twin_kernel_hwio(twin k, st_conv_plan *pr, st_conv_plan *pd, size_t nw) {
    twin t = twin_floats(NULL, nw);
    float *h = ST_MALLOC(nw * sizeof *h);
    ref->conv_weights_export(ref, pr, R(k), h);
    ref->upload(ref, t.ref, h, nw * sizeof *h);
    dev->conv_weights_export(dev, pd, D(k), h);
    dev->upload(dev, t.dev, h, nw * sizeof *h);
    free(h);
    return t;
}

static void check_conv(st_conv_desc d, int with_bias) {
    st_conv_desc_finish(&d);
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.k;
    size_t nw = (size_t)d.r * d.s * d.c * d.k;
    float *hx = host_random(nx, -1, 1), *hw = host_random(nw, -0.5f, 0.5f);
    float *hb = host_random(d.k, -0.5f, 0.5f), *hdy = host_random(ny, -1, 1);
    st_conv_plan *pr = ref->conv_plan(ref, &d), *pd = dev->conv_plan(dev, &d);
    TEST_CHECK(dev->conv_plan(dev, &d) == pd, "conv plan is not cached per shape");
    twin x = twin_floats(hx, nx), w = twin_kernel(pr, pd, hw), b = twin_floats(hb, d.k);
    twin y = twin_floats(NULL, ny), dy = twin_floats(hdy, ny), dx = twin_floats(NULL, nx);
    twin dw_layout = twin_kernel(pr, pd, NULL), db = twin_floats(NULL, d.k);
    ref->conv_forward(ref, pr, R(x), R(w), with_bias ? R(b) : NULL, R(y));
    dev->conv_forward(dev, pd, D(x), D(w), with_bias ? D(b) : NULL, D(y));
    ref->conv_backward_data(ref, pr, R(dy), R(w), R(dx));
    dev->conv_backward_data(dev, pd, D(dy), D(w), D(dx));
    ref->conv_backward_filter(ref, pr, R(x), R(dy), R(dw_layout), R(db));
    dev->conv_backward_filter(dev, pd, D(x), D(dy), D(dw_layout), D(db));
    twin dw = twin_kernel_hwio(dw_layout, pr, pd, nw);
    char name[160];
    snprintf(name, sizeof name, "conv %dx%d s%dx%d pad %d,%d,%d,%d relu=%d bias=%d", d.r, d.s,
             d.stride_h, d.stride_w, d.pad_top, d.pad_bottom, d.pad_left, d.pad_right, d.relu,
             with_bias);
    char what[200];
    snprintf(what, sizeof what, "%s forward", name);
    compare_norm(what, y, tol.gemm);
    snprintf(what, sizeof what, "%s backward data", name);
    compare_norm(what, dx, tol.gemm);
    snprintf(what, sizeof what, "%s backward filter", name);
    compare_norm(what, dw, tol.reduce);
    snprintf(what, sizeof what, "%s dbias", name);
    compare_norm(what, db, TOL_REDUCE);
    twin parts[] = {x, w, b, y, dy, dx, dw_layout, dw, db};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hx);
    free(hw);
    free(hb);
    free(hdy);
}

/* A conv geometry from one table row (the fields the tests vary; the rest zero). */
static st_conv_desc geometry(int n, int h, int w, int c, int k, int r, int s, int stride_h,
                             int stride_w, int top, int bottom, int left, int right, int relu) {
    return (st_conv_desc){.n = n, .h = h, .w = w, .c = c, .k = k, .r = r, .s = s,
                          .stride_h = stride_h, .stride_w = stride_w, .pad_top = top,
                          .pad_bottom = bottom, .pad_left = left, .pad_right = right,
                          .relu = relu};
}

static void test_conv(void) {
    /*                            n  h   w   c  k   r  s  sh sw top bot left right relu */
    st_conv_desc stem = geometry(2, 19, 19, 3, 8, 7, 7, 2, 2, 3, 3, 3, 3, 0);
    st_conv_desc body = geometry(2, 8, 8, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    st_conv_desc shortcut = geometry(2, 8, 8, 16, 32, 1, 1, 2, 2, 0, 0, 0, 0, 0);
    st_conv_desc same_s2 = geometry(2, 8, 8, 8, 8, 3, 3, 2, 2, 0, 1, 0, 1, 1); /* TF same */
    st_conv_desc lopsided = geometry(1, 7, 6, 4, 5, 3, 2, 2, 1, 2, 1, 1, 0, 0);
    check_conv(stem, 1);
    check_conv(body, 1);
    check_conv(shortcut, 0);
    check_conv(same_s2, 1);
    check_conv(lopsided, 0);
}

static void test_fold_bn(void) {
    st_conv_desc d = geometry(1, 4, 4, 6, 10, 3, 3, 1, 1, 1, 1, 1, 1, 0);
    st_conv_desc_finish(&d);
    size_t nw = (size_t)d.r * d.s * d.c * d.k;
    float *hw = host_random(nw, -1, 1), *hb = host_random(d.k, -1, 1);
    float *hg = host_random(d.k, 0.5f, 1.5f), *hbeta = host_random(d.k, -1, 1);
    float *hmean = host_random(d.k, -1, 1), *hvar = host_random(d.k, 0.1f, 2.0f);
    st_conv_plan *pr = ref->conv_plan(ref, &d), *pd = dev->conv_plan(dev, &d);
    twin w = twin_kernel(pr, pd, hw), b = twin_floats(hb, d.k), g = twin_floats(hg, d.k);
    twin beta = twin_floats(hbeta, d.k), mean = twin_floats(hmean, d.k);
    twin var = twin_floats(hvar, d.k), w_out = twin_kernel(pr, pd, NULL);
    twin b_out = twin_floats(NULL, d.k);
    ref->conv_fold_bn(ref, pr, R(w), R(b), R(g), R(beta), R(mean), R(var), 1.001e-5f, R(w_out),
                      R(b_out));
    dev->conv_fold_bn(dev, pd, D(w), D(b), D(g), D(beta), D(mean), D(var), 1.001e-5f, D(w_out),
                      D(b_out));
    twin w_out_hwio = twin_kernel_hwio(w_out, pr, pd, nw);
    compare("fold_bn weights", w_out_hwio, 1e-7, TOL_ELEM);
    compare("fold_bn bias", b_out, 1e-7, TOL_ELEM);
    ref->conv_fold_bn(ref, pr, R(w), NULL, R(g), R(beta), R(mean), R(var), 1e-5f, R(w_out),
                      R(b_out));
    dev->conv_fold_bn(dev, pd, D(w), NULL, D(g), D(beta), D(mean), D(var), 1e-5f, D(w_out),
                      D(b_out));
    compare("fold_bn bias without conv bias", b_out, 1e-7, TOL_ELEM);
    twin parts[] = {w, b, g, beta, mean, var, w_out, w_out_hwio, b_out};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hw);
    free(hb);
    free(hg);
    free(hbeta);
    free(hmean);
    free(hvar);
}

/* ---- batch norm, activations, pooling ------------------------------------------------ */

static void check_bn(long rows, int c, int relu) {
    st_bn_desc d = {.rows = rows, .c = c, .eps = 1.001e-5f, .momentum = 0.1f, .relu = relu};
    size_t nx = (size_t)rows * c;
    float *hx = host_random(nx, 2.0f, 4.0f); /* mean ~3 >> std: the pivot matters */
    float *hg = host_random(c, 0.5f, 1.5f), *hb = host_random(c, -0.5f, 0.5f);
    float *hrm = host_random(c, -1, 1), *hrv = host_random(c, 0.5f, 1.5f);
    float *hdy = host_random(nx, -1, 1);
    twin x = twin_floats(hx, nx), g = twin_floats(hg, c), b = twin_floats(hb, c);
    twin rm = twin_floats(hrm, c), rv = twin_floats(hrv, c), y = twin_floats(NULL, nx);
    twin mean = twin_floats(NULL, c), rstd = twin_floats(NULL, c), dy = twin_floats(hdy, nx);
    twin dx = twin_floats(NULL, nx), dg = twin_floats(NULL, c), db = twin_floats(NULL, c);
    ref->bn_forward_train(ref, &d, R(x), R(g), R(b), R(y), R(mean), R(rstd), R(rm), R(rv));
    dev->bn_forward_train(dev, &d, D(x), D(g), D(b), D(y), D(mean), D(rstd), D(rm), D(rv));
    compare("bn train y", y, 1e-5, 1e-5);
    compare("bn save_mean", mean, 1e-6, TOL_ELEM);
    compare("bn save_rstd", rstd, 1e-6, 1e-5);
    compare("bn running_mean", rm, 1e-6, TOL_ELEM);
    compare("bn running_var", rv, 1e-6, 1e-5);
    twin_share_ref(y);
    twin_share_ref(mean);
    twin_share_ref(rstd);
    ref->bn_backward(ref, &d, R(x), relu ? R(y) : NULL, R(dy), R(g), R(mean), R(rstd), R(dx),
                     R(dg), R(db));
    dev->bn_backward(dev, &d, D(x), relu ? D(y) : NULL, D(dy), D(g), D(mean), D(rstd), D(dx),
                     D(dg), D(db));
    compare_norm("bn backward dx", dx, TOL_REDUCE);
    compare_norm("bn backward dgamma", dg, TOL_REDUCE);
    compare_norm("bn backward dbeta", db, TOL_REDUCE);
    ref->bn_forward_infer(ref, &d, R(x), R(g), R(b), R(rm), R(rv), R(y));
    twin_share_ref(rm);
    twin_share_ref(rv);
    dev->bn_forward_infer(dev, &d, D(x), D(g), D(b), D(rm), D(rv), D(y));
    compare("bn infer y", y, 1e-6, 1e-5);
    twin parts[] = {x, g, b, rm, rv, y, mean, rstd, dy, dx, dg, db};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hx);
    free(hg);
    free(hb);
    free(hrm);
    free(hrv);
    free(hdy);
}

static void test_bn(void) {
    check_bn(2 * 5 * 5, 24, 0);
    check_bn(3 * 7 * 7, 40, 1); /* C not a multiple of 32: partial column strip */
    check_bn(4 * 28 * 28, 64, 1); /* several row chunks in the column reduction */
}

static void test_activation(void) {
    const size_t n = 10007;
    float *ha = host_random(n, -1, 1), *hb = host_random(n, -1, 1), *hg = host_random(n, -1, 1);
    twin a = twin_floats(ha, n), b = twin_floats(hb, n), y = twin_floats(NULL, n);
    twin dy = twin_floats(hg, n), dx = twin_floats(NULL, n);
    ref->relu_forward(ref, R(a), R(y), n);
    dev->relu_forward(dev, D(a), D(y), n);
    compare("relu forward", y, 0, 0);
    ref->relu_backward(ref, R(y), R(dy), R(dx), n);
    dev->relu_backward(dev, D(y), D(dy), D(dx), n);
    compare("relu backward", dx, 0, 0);
    for (int relu = 0; relu < 2; relu++) {
        ref->add_forward(ref, R(a), R(b), R(y), n, relu);
        dev->add_forward(dev, D(a), D(b), D(y), n, relu);
        compare(relu ? "add + relu" : "add", y, 0, 0);
    }
    twin parts[] = {a, b, y, dy, dx};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(ha);
    free(hb);
    free(hg);
}

static void check_maxpool(st_pool_desc d) {
    st_pool_desc_finish(&d);
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.c;
    float *hx = ST_MALLOC(nx * sizeof *hx);
    for (size_t i = 0; i < nx; i++) /* few distinct values, many negative: ties and pad wins */
        hx[i] = (float)((int)urand(0, 7) - 4);
    float *hdy = host_random(ny, -1, 1);
    twin x = twin_floats(hx, nx), y = twin_floats(NULL, ny), dy = twin_floats(hdy, ny);
    twin dx = twin_floats(NULL, nx);
    ref->maxpool_forward(ref, &d, R(x), R(y));
    dev->maxpool_forward(dev, &d, D(x), D(y));
    compare(d.pad_with_zero ? "maxpool forward (zero pad)" : "maxpool forward (-inf pad)", y, 0,
            0);
    ref->maxpool_backward(ref, &d, R(x), R(y), R(dy), R(dx));
    dev->maxpool_backward(dev, &d, D(x), D(y), D(dy), D(dx));
    compare(d.pad_with_zero ? "maxpool backward (zero pad)" : "maxpool backward (-inf pad)", dx,
            0, 0);
    twin_free(x);
    twin_free(y);
    twin_free(dy);
    twin_free(dx);
    free(hx);
    free(hdy);
}

static void test_pool(void) {
    /*  n  h   w   c   r  s  sh sw top bot left right zero */
    st_pool_desc keras = {2, 11, 11, 8, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 1};
    st_pool_desc torch = {2, 11, 11, 8, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 0};
    st_pool_desc lopsided = {1, 9, 8, 5, 3, 2, 2, 1, 0, 2, 1, 0, 0, 0, 1};
    check_maxpool(keras);
    check_maxpool(torch);
    check_maxpool(lopsided);

    st_gpool_kind kinds[3] = {ST_GPOOL_AVG, ST_GPOOL_MAX, ST_GPOOL_GEM};
    const char *names[3] = {"avg", "max", "gem"};
    for (int i = 0; i < 3; i++) {
        st_gpool_desc d = {3, 49, 70, kinds[i], 3.0f, 1e-6f};
        size_t nx = (size_t)d.n * d.hw * d.c, ny = (size_t)d.n * d.c;
        float *hx = host_random(nx, -0.5f, 2.0f), *hdy = host_random(ny, -1, 1);
        twin x = twin_floats(hx, nx), y = twin_floats(NULL, ny), dy = twin_floats(hdy, ny);
        twin dx = twin_floats(NULL, nx);
        char name[64];
        ref->gpool_forward(ref, &d, R(x), R(y));
        dev->gpool_forward(dev, &d, D(x), D(y));
        snprintf(name, sizeof name, "gpool %s forward", names[i]);
        compare(name, y, 1e-7, kinds[i] == ST_GPOOL_MAX ? 0 : TOL_ELEM);
        twin_share_ref(y);
        ref->gpool_backward(ref, &d, R(x), R(y), R(dy), R(dx));
        dev->gpool_backward(dev, &d, D(x), D(y), D(dy), D(dx));
        snprintf(name, sizeof name, "gpool %s backward", names[i]);
        compare(name, dx, 1e-7, kinds[i] == ST_GPOOL_GEM ? 1e-5 : 0);
        twin_free(x);
        twin_free(y);
        twin_free(dy);
        twin_free(dx);
        free(hx);
        free(hdy);
    }
}

/* ---- embedding heads and losses ------------------------------------------------------ */

static void test_l2norm(void) {
    const int n = 9, d = 300;
    float *hx = host_random((size_t)n * d, -1, 1), *hdy = host_random((size_t)n * d, -1, 1);
    for (int j = 0; j < d; j++) hx[(size_t)4 * d + j] *= 1e-9f; /* a row under eps: the clamp */
    twin x = twin_floats(hx, (size_t)n * d), y = twin_floats(NULL, (size_t)n * d);
    twin norms = twin_floats(NULL, n), dy = twin_floats(hdy, (size_t)n * d);
    twin dx = twin_floats(NULL, (size_t)n * d);
    ref->l2norm_forward(ref, n, d, R(x), R(y), R(norms), 1e-6f);
    dev->l2norm_forward(dev, n, d, D(x), D(y), D(norms), 1e-6f);
    compare("l2norm y", y, 1e-7, TOL_ELEM);
    compare("l2norm norms", norms, 0, TOL_ELEM);
    twin_share_ref(y);
    twin_share_ref(norms);
    ref->l2norm_backward(ref, n, d, R(y), R(norms), R(dy), R(dx));
    dev->l2norm_backward(dev, n, d, D(y), D(norms), D(dy), D(dx));
    compare_norm("l2norm backward", dx, TOL_GEMM);
    twin parts[] = {x, y, norms, dy, dx};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hx);
    free(hdy);
}

static void test_xent(void) {
    const int n = 13, k = 1000;
    float *hz = host_random((size_t)n * k, -8, 8);
    for (int j = 0; j < k; j++) hz[j] += 1000.0f; /* row 0: a large common offset */
    int32_t labels[13];
    for (int i = 0; i < n; i++) labels[i] = (int32_t)urand(0, (float)k);
    twin z = twin_floats(hz, (size_t)n * k), lab = twin_bytes(labels, sizeof labels);
    twin probs = twin_floats(NULL, (size_t)n * k), loss = twin_floats(NULL, n);
    twin dz = twin_floats(NULL, (size_t)n * k), stats = twin_bytes(NULL, sizeof(st_xent_stats));
    ref->xent_forward(ref, n, k, R(z), lab.ref, 0.1f, R(probs), R(loss), stats.ref);
    dev->xent_forward(dev, n, k, D(z), lab.dev, 0.1f, D(probs), D(loss), stats.dev);
    compare("xent probs", probs, 1e-9, 1e-5);
    compare("xent loss", loss, 1e-6, 1e-5);
    st_xent_stats *sr, *sd;
    fetch(stats, (void **)&sr, (void **)&sd);
    /* a sum of n row losses each within the rows' tolerance above; top-1 of random logits has
     * no ties, so the hits agree exactly */
    TEST_CHECK(fabs(sd->loss_sum - sr->loss_sum) <= n * 1e-6 + 1e-5 * fabs(sr->loss_sum),
               "xent loss_sum %.9g vs %.9g", sd->loss_sum, sr->loss_sum);
    TEST_CHECK(sd->correct == sr->correct, "xent correct %g vs %g", sd->correct, sr->correct);
    free(sr);
    free(sd);
    twin_share_ref(probs);
    ref->xent_backward(ref, n, k, R(probs), lab.ref, 0.1f, 1.0f / n, R(dz));
    dev->xent_backward(dev, n, k, D(probs), lab.dev, 0.1f, 1.0f / n, D(dz));
    compare("xent backward", dz, 1e-9, TOL_ELEM);
    twin parts[] = {z, lab, probs, loss, dz, stats};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hz);
}

static void check_triplet(int batch_all, int soft_margin) {
    const int p = 6, kk = 4, n = p * kk, d = 64;
    st_triplet_desc desc = {n, d, batch_all, soft_margin, 0.2f, 1e-12f};
    float *he = host_random((size_t)n * d, -1, 1);
    memcpy(he + (size_t)5 * d, he + (size_t)4 * d, d * sizeof(float)); /* a duplicated image */
    int32_t labels[24];
    for (int i = 0; i < n; i++) labels[i] = i / kk;
    twin emb = twin_floats(he, (size_t)n * d), lab = twin_bytes(labels, sizeof labels);
    twin dist = twin_floats(NULL, (size_t)n * n), demb = twin_floats(NULL, (size_t)n * d);
    twin stats = twin_bytes(NULL, sizeof(st_triplet_stats));
    ref->triplet_loss(ref, &desc, R(emb), lab.ref, R(dist), R(demb), stats.ref);
    dev->triplet_loss(dev, &desc, D(emb), lab.dev, D(dist), D(demb), stats.dev);
    st_triplet_stats *href, *hdev;
    fetch(stats, (void **)&href, (void **)&hdev);
    st_triplet_stats sr = *href, sd = *hdev;
    free(href);
    free(hdev);
    char name[80];
    snprintf(name, sizeof name, "triplet batch_all=%d soft=%d", batch_all, soft_margin);
    TEST_CHECK(fabsf(sd.loss - sr.loss) <= TOL_TRIPLET * fabsf(sr.loss) + 1e-7f,
               "%s loss %.9g vs %.9g", name, sd.loss, sr.loss);
    TEST_CHECK(sd.active_fraction == sr.active_fraction, "%s active %.9g vs %.9g", name,
               sd.active_fraction, sr.active_fraction);
    TEST_CHECK(fabsf(sd.mean_pos - sr.mean_pos) <= TOL_TRIPLET * sr.mean_pos, "%s mean_pos", name);
    TEST_CHECK(fabsf(sd.mean_neg - sr.mean_neg) <= TOL_TRIPLET * sr.mean_neg, "%s mean_neg", name);
    compare_norm(name, dist, TOL_GEMM);
    compare_norm(name, demb, TOL_TRIPLET);
    twin parts[] = {emb, lab, dist, demb, stats};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(he);
}

static void test_triplet(void) {
    for (int batch_all = 0; batch_all < 2; batch_all++)
        for (int soft = 0; soft < 2; soft++) check_triplet(batch_all, soft);
}

static void test_optim(void) {
    const size_t n = 4099;
    st_opt_kind kinds[4] = {ST_OPT_SGD, ST_OPT_ADAM, ST_OPT_ADAMW, ST_OPT_RMSPROP};
    const char *names[4] = {"sgd", "adam", "adamw", "rmsprop"};
    float *hp = host_random(n, -1, 1);
    for (int i = 0; i < 4; i++) {
        st_optim_desc d = {kinds[i], 1e-2f, 0.9f, kinds[i] == ST_OPT_SGD, 0.9f, 0.999f, 1e-8f,
                           0.99f, 1e-4f, 0};
        twin param = twin_floats(hp, n), m = twin_floats(NULL, n), v = twin_floats(NULL, n);
        for (int step = 1; step <= 5; step++) {
            float *hg = host_random(n, -1, 1);
            twin grad = twin_floats(hg, n);
            d.step = step;
            ref->optim_step(ref, &d, R(param), R(grad), R(m), R(v), n, NULL);
            dev->optim_step(dev, &d, D(param), D(grad), D(m), D(v), n, NULL);
            twin_free(grad);
            free(hg);
        }
        char name[64];
        snprintf(name, sizeof name, "%s params after 5 steps", names[i]);
        compare(name, param, 1e-7, TOL_OPT);
        snprintf(name, sizeof name, "%s state m", names[i]);
        compare(name, m, 1e-7, TOL_OPT);
        twin_free(param);
        twin_free(m);
        twin_free(v);
    }
    free(hp);
}

/* The optimizer step without a read back: the gradient-norm verdict over a device list of
 * spans, then optim_step under it. Three rounds: plain (clip 10 leaves these gradients alone),
 * clipped (clip 1), and a NaN in the last span (skipped: parameters and state unchanged, the
 * device's skip count 1, and the following clean step uses the bias correction of step 3). */
static void check_grad_norm_round(twin param, twin m, twin v, twin grads, twin status,
                                  const st_span *hr, const st_span *hd, int spans, float clip,
                                  long step, const char *what) {
    twin list = {ref->alloc(ref, spans * sizeof(st_span)), dev->alloc(dev, spans * sizeof(st_span)),
                 spans * sizeof(st_span)};
    ref->upload(ref, list.ref, hr, list.bytes);
    dev->upload(dev, list.dev, hd, list.bytes);
    ref->optim_grad_norm(ref, list.ref, spans, clip, status.ref);
    dev->optim_grad_norm(dev, list.dev, spans, clip, status.dev);
    st_optim_desc d = {ST_OPT_ADAM, 1e-2f, 0, 0, 0.9f, 0.999f, 1e-8f, 0.99f, 1e-4f, step};
    ref->optim_step(ref, &d, R(param), R(grads), R(m), R(v), param.bytes / 4, status.ref);
    dev->optim_step(dev, &d, D(param), D(grads), D(m), D(v), param.bytes / 4, status.dev);
    st_optim_status sr, sd;
    ref->download(ref, &sr, status.ref, sizeof sr);
    dev->download(dev, &sd, status.dev, sizeof sd);
    /* double sums of ~1e4 squares in another order: 1e-12 relative is 1e4 x the rounding */
    TEST_CHECK(sr.skip == sd.skip && sr.clip == sd.clip && sr.skipped == sd.skipped &&
                   (sr.skip || fabs(sd.norm - sr.norm) <= 1e-12 * sr.norm),
               "%s: status skip %d/%d clip %d/%d skipped %lld/%lld norm %.17g/%.17g", what,
               sd.skip, sr.skip, sd.clip, sr.clip, (long long)sd.skipped, (long long)sr.skipped,
               sd.norm, sr.norm);
    char name[96];
    snprintf(name, sizeof name, "%s: parameters", what);
    compare(name, param, 1e-7, TOL_OPT);
    snprintf(name, sizeof name, "%s: Adam v", what);
    compare(name, v, 1e-9, TOL_OPT);
    twin_free(list);
}

static void test_grad_norm(void) {
    const size_t sizes[3] = {3000, 7, 9000}, n = 3000 + 7 + 9000;
    float *hp = host_random(n, -1, 1), *hg = host_random(n, -0.1f, 0.1f);
    twin param = twin_floats(hp, n), m = twin_floats(NULL, n), v = twin_floats(NULL, n);
    twin grads = twin_floats(hg, n), status = twin_bytes(NULL, sizeof(st_optim_status));
    st_span hr[3], hd[3];
    for (size_t i = 0, at = 0; i < 3; at += sizes[i], i++) {
        hr[i] = (st_span){R(grads) + at, sizes[i]};
        hd[i] = (st_span){D(grads) + at, sizes[i]};
    }
    check_grad_norm_round(param, m, v, grads, status, hr, hd, 3, 10.0f, 1, "unclipped step");
    check_grad_norm_round(param, m, v, grads, status, hr, hd, 3, 1.0f, 2, "clipped step");
    const float nan = NAN;
    ref->upload(ref, R(grads) + n - 1, &nan, sizeof nan);
    dev->upload(dev, D(grads) + n - 1, &nan, sizeof nan);
    check_grad_norm_round(param, m, v, grads, status, hr, hd, 3, 1.0f, 3, "skipped step");
    ref->upload(ref, R(grads) + n - 1, hg + n - 1, sizeof(float));
    dev->upload(dev, D(grads) + n - 1, hg + n - 1, sizeof(float));
    check_grad_norm_round(param, m, v, grads, status, hr, hd, 3, 1.0f, 4, "step after a skip");
    twin parts[] = {param, m, v, grads, status};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) twin_free(parts[i]);
    free(hp);
    free(hg);
}

/* Page-locked memory, the asynchronous upload on the copy stream and its ordering: an op queued
 * before the upload still reads the old contents of dst, an op after it reads the new ones;
 * the fence lets the host rewrite the source. Also mem_info. */
static void test_pinned_upload(void) {
    const size_t n = 3u << 20; /* 12 MB */
    float *pinned = dev->host_alloc(dev, n * sizeof(float));
    TEST_CHECK(pinned && pinned[0] == 0 && pinned[n - 1] == 0, "host_alloc is zeroed");
    float *h = host_random(n, -1, 1);
    memcpy(pinned, h, n * sizeof(float));
    float *dst = dev->alloc(dev, n * sizeof(float)), *before = dev->alloc(dev, n * sizeof(float));
    dev->fill(dev, dst, 2.0f, n);
    dev->copy(dev, before, dst, n * sizeof(float)); /* queued before: must see the 2s */
    dev->upload_async(dev, dst, pinned, n * sizeof(float));
    dev->scale(dev, dst, 0.5f, n); /* queued after: must see the upload */
    dev->upload_fence(dev);
    memset(pinned, 0, n * sizeof(float)); /* allowed after the fence */
    float *got = ST_MALLOC(n * sizeof(float)), *old = ST_MALLOC(n * sizeof(float));
    dev->download(dev, got, dst, n * sizeof(float));
    dev->download(dev, old, before, n * sizeof(float));
    size_t bad = 0, bad_old = 0;
    for (size_t i = 0; i < n; i++) {
        bad += got[i] != h[i] * 0.5f;
        bad_old += old[i] != 2.0f;
    }
    TEST_CHECK(bad == 0 && bad_old == 0, "upload_async ordering: %zu elements wrong after, %zu "
               "before", bad, bad_old);
    size_t free_bytes = 0, total_bytes = 0;
    dev->mem_info(dev, &free_bytes, &total_bytes);
    TEST_CHECK(total_bytes > 0 && free_bytes > 0 && free_bytes <= total_bytes,
               "mem_info: %zu free of %zu", free_bytes, total_bytes);
    dev->free(dev, dst);
    dev->free(dev, before);
    dev->host_free(dev, pinned);
    free(got);
    free(old);
    free(h);
}

/* ---- top-k: identical lists, tie order included ------------------------------------- */

static void check_topk(int q, int tile, int tiles, int k, int larger) {
    size_t nl = (size_t)q * k;
    float *hs = ST_MALLOC(nl * sizeof *hs);
    int64_t *hi = ST_MALLOC(nl * sizeof *hi);
    for (size_t i = 0; i < nl; i++) {
        hs[i] = larger ? -3.402823466e38f : 3.402823466e38f; /* empty slots: worst score, -1 */
        hi[i] = -1;
    }
    twin best = twin_floats(hs, nl), index = twin_bytes(hi, nl * sizeof *hi);
    for (int t = 0; t < tiles; t++) {
        float *sc = ST_MALLOC((size_t)q * tile * sizeof *sc);
        for (size_t i = 0; i < (size_t)q * tile; i++) {
            sc[i] = (float)(int)urand(0, 50) * 0.25f; /* 50 values: heavy ties */
            if (urand(0, 1) < 0.01f) sc[i] = NAN;     /* NaN never enters a list */
        }
        twin scores = twin_floats(sc, (size_t)q * tile);
        int64_t base = (int64_t)(tiles - 1 - t) * tile; /* tiles out of gallery order */
        ref->topk_merge(ref, q, tile, base, k, larger, R(scores), R(best), index.ref);
        dev->topk_merge(dev, q, tile, base, k, larger, D(scores), D(best), index.dev);
        twin_free(scores);
        free(sc);
    }
    char name[96];
    snprintf(name, sizeof name, "topk q=%d tile=%d x%d k=%d larger=%d indices", q, tile, tiles, k,
             larger);
    compare_exact_bytes(name, index);
    snprintf(name, sizeof name, "topk q=%d tile=%d x%d k=%d larger=%d scores", q, tile, tiles, k,
             larger);
    compare_exact_bytes(name, best);
    twin_free(best);
    twin_free(index);
    free(hs);
    free(hi);
}

static void test_topk(void) {
    check_topk(5, 1000, 3, 1, 1);
    check_topk(5, 1000, 3, 10, 0);
    check_topk(3, 5000, 2, 1024, 1); /* k = 1024 with merges inside a tile */
    check_topk(2, 300, 2, 1000, 0);  /* k > gallery: empty slots stay (worst, -1) */
    check_topk(2, 3000, 2, 2500, 1); /* k above 1024 */
}

/* ---- math modes (SIMTUNE_CUDA_MATH) ---------------------------------------------------- */

#ifdef SIMTUNE_HAVE_CUDA
/* A refused math-mode environment: the CUDA backend does not open, and the message names the
 * variable. Checked before the device is looked for, so it holds on machines without a GPU. */
static void check_math_refusal(const char *var, const char *value) {
    setenv(var, value, 1);
    st_backend *be = st_backend_open("cuda", 0);
    const char *message = st_error_get();
    TEST_CHECK(!be && strstr(message, var), "%s=%s: the CUDA backend %s (message: %s)", var,
               value, be ? "opened" : "failed without naming the variable", message);
    if (be) st_backend_close(be);
    unsetenv(var);
}

static void test_math_refusals(void) {
    check_math_refusal("SIMTUNE_CUDA_MATH", "fp16"); /* unknown value */
    check_math_refusal("SIMTUNE_CUDA_MATH", "TF32"); /* values are lower case */
    check_math_refusal("SIMTUNE_CUDA_TF32", "1");    /* replaced by SIMTUNE_CUDA_MATH=tf32 */
}
#else
static void test_math_refusals(void) {} /* without CUDA the backend never opens */
#endif

/* The GEMM, dense and conv cases again on the backend under test reopened with
 * SIMTUNE_CUDA_MATH=tf32, at the TF32 tolerances (header); then back to fp32. */
static void test_tf32_mode(const char *name) {
    st_backend_close(dev);
    setenv("SIMTUNE_CUDA_MATH", "tf32", 1);
    dev = st_backend_open(name, 0);
    unsetenv("SIMTUNE_CUDA_MATH");
    ST_CHECK(dev, "SIMTUNE_CUDA_MATH=tf32: the %s backend does not open: %s", name,
             st_error_get());
    tol = tf32_tolerances;
    test_gemm();
    test_dense();
    test_conv();
    tol = fp32_tolerances;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "cuda";
    unsetenv("SIMTUNE_CUDA_TF32");
    unsetenv("SIMTUNE_CUDA_MATH"); /* fp32 first: the tolerances assume plain FP32 */
    if (strcmp(name, "cuda") == 0) test_math_refusals();
    if (test_failures) return test_finish("test_gpu_ops"); /* a failure, not a skip */
    dev = st_backend_open(name, 0);
    if (!dev) /* no device: a skip even under SIMTUNE_REQUIRE_ORACLES (see the header) */
        test_skip_no_gpu(st_error_get()); /* a failure under SIMTUNE_REQUIRE_GPU=1 */
    ref = st_backend_open("cpu", 2);
    test_memory();
    test_gemm();
    test_dense();
    test_conv();
    test_fold_bn();
    test_bn();
    test_activation();
    test_pool();
    test_l2norm();
    test_xent();
    test_triplet();
    test_optim();
    test_grad_norm();
    test_pinned_upload();
    test_topk();
    test_tf32_mode(name);
    st_backend_close(ref);
    st_backend_close(dev);
    return test_finish("test_gpu_ops");
}
