/*
 * test_gpu_bf16.c: bf16 convolutions on the CUDA backend (issue 16 item 5; kernels/cuda/conv.cu,
 * cuDNN's PSEUDO_BFLOAT16_CONFIG: bf16 x, w, y, FP32 accumulation) against the CPU backend.
 *
 *   rounding   1x1 identity convolutions in a bf16 plan, where every output is one product x * 1
 *              (exact in FP32), so y = bf16(x) and dx = bf16(dy) exactly: with asymmetric padding
 *              (the explicit pad path, zeros in the padded rows) the device's y equals
 *              st_bf16_round(x) and its dx st_bf16_round(dy), bit for bit, ties and denormals
 *              included: the device rounds as the CPU does (test_bf16_round ties the helper to
 *              the CPU's instruction).
 *   per op     a 3x3 stride-1 conv and a 3x3 stride-2 conv with TF-style asymmetric padding:
 *              forward y (no bias), backward-data dx, backward-filter dw of the device's bf16
 *              plan against the CPU's FP32 plan on the inputs rounded to bf16 on the host (what
 *              the CPU's bf16 plan computes: bf16 products are exact in FP32, the sums FP32;
 *              and it needs no AVX512_BF16 on the GPU machine), within OP_TOL by norm; the
 *              fused epilogue bit for bit against relu(y + bias) computed on the host from the
 *              device's y; the bias gradient against the double column sums of the bf16-rounded
 *              dy (what conv.cu sums, as oneDNN does) within 1e-5.
 *   cache      the kernel's bf16 copy follows its buffer: re-importing other weights into it
 *              and writing it raw (a device copy + conv_weights_changed) both change the output to
 *              exactly that of a fresh buffer holding the new weights.
 *   activations  operands stored as bf16 between bf16 convs and BNs: a bf16 plan with x_bf16 and
 *              dy_bf16 given bf16(x), bf16(dy) (rounded on the host, uploaded as uint16_t) against
 *              the same device's plan without the flags given FP32 x and dy, on an asymmetric-
 *              padded stride-2 conv (padded from the bf16 input) and a symmetric one (read in
 *              place): forward y, conv_backward's dw, dbias and dx, backward-data's dx, all bit for
 *              bit (the same rounding, the bias sums of the same bf16 dy); the forward with y_bf16
 *              (plain, and with bias and ReLU) writes st_bf16_from_float of its FP32 y.
 *              bn_forward_train and bn_forward_infer with y_bf16 write st_bf16_from_float of their
 *              FP32 y; bn_backward given the bf16 y (y_bf16) equals bn_backward given it widened to
 *              FP32, and with dx_bf16 writes st_bf16_from_float of that dx; every bn op with
 *              x_bf16 equals the same op given the bf16 x widened to FP32: all bit for bit (one
 *              FP32 computation on the same values, only loads and stores differ).
 *   model      tv_resnet18 (128 px, batch 8) and resnet50 (Keras: conv biases; 64 px, batch 4),
 *              everything trainable, parameters randomised and residual branches damped
 *              (gpu_parity.h), one training forward and backward: the device in `precision: bf16`
 *              (no fallback: its config says bf16) against the CPU in FP32, the yardstick of
 *              test_bf16_train: a second CPU FP32 run whose input alone is perturbed by 2^-9
 *              relative. Pooled features within FEATURE_TOL and above FEATURE_MIN (bf16 is in
 *              effect: two FP32 backends agree within 1e-4, test_gpu_model); the RMS over
 *              gradient tensors of their relative errors within GRAD_RMS_FACTOR times the
 *              perturbed run's; no gradient off by more than GRAD_WORST.
 *   steps      two SGD steps of the bf16 tv_resnet18 on the device, then a fresh bf16 model given
 *              its parameters: inference features bit-identical (a stale bf16 kernel copy after
 *              an optimizer step would differ; test_bf16_kernel_cache is the CPU's twin).
 *
 * Tolerances.
 *   OP_TOL 4e-3: both backends read the same bf16 x, dy and kernel (the rounding part) and
 *       accumulate in FP32 in different orders (test_gpu_ops holds FP32 convs to 1e-5 by norm);
 *       the device then rounds each output element to bf16 (cuDNN's bf16 configuration writes
 *       bf16; 8 significant bits), |bf16(v) - v| <= 2^-8 |v| = 3.9e-3 |v|, so by norm <=
 *       3.9e-3 + 1e-5 (typically ~1.5e-3). A wrong layout or a missing widening is off by
 *       1e-1 .. 1; a rounding that differs from the CPU's is the rounding part's to catch.
 *   FEATURE_TOL 3e-2, FEATURE_MIN 1e-4, GRAD_RMS_FACTOR 6, GRAD_WORST 0.8: test_bf16_train's
 *       bounds for the CPU's bf16 (features 1e-2, measured 4e-3 there; RMS 4x the perturbed run,
 *       measured 1.9x; worst 0.5) widened for the device's extra rounding of y, dx and dw and for
 *       resnet50 at 64 px, batch 4 (conv5's BN sees 16 rows and amplifies rounding), as measured
 *       with `test_gpu_bf16 bf16-cpu` (the CPU's bf16 convolutions with their outputs rounded to
 *       bf16 as cuDNN's are, the epilogue and bias gradient as conv.cu computes them; the same
 *       values up to summation order) over four random draws, with the activations between
 *       convs and BNs stored as bf16 (the model's plan): features 4.7e-3 .. 5.0e-3
 *       (tv_resnet18) and 1.34e-2 .. 1.40e-2 (resnet50, whose conv biases add one more rounding
 *       of y), 5x .. 6.6x the perturbed input's; gradient RMS 2.2x .. 2.7x the perturbed run's;
 *       worst tensor 0.19 .. 0.30 (tv_resnet18) and 0.34 .. 0.40 (resnet50), all BN betas of
 *       early blocks, where ReLU flips compound. So the margins are 2.1x (features), 2.2x (RMS),
 *       2.0x (worst). A conv in a wrong layout or
 *       without FP32 accumulation moves the features by order 1; a zero or sign-flipped gradient
 *       tensor is off by 1 or 2.
 *
 * Usage: test_gpu_bf16 [BACKEND]: cuda (default; exits 77 without a device or on a device before
 * compute capability 8.0, a failure under SIMTUNE_REQUIRE_GPU=1), or bf16-cpu (the emulation
 * above, which set the model tolerances; needs a CPU with AVX512_BF16). Label gpu
 * (tests/gpu_bf16.cmake).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_parity.h"
#include "infer/model/model.h"
#include "kernels/math/activation.h"
#include "kernels/math/bf16.h"
#include "test_util.h"

static const double OP_TOL = 4e-3;
static const double FEATURE_TOL = 3e-2;
static const double FEATURE_MIN = 1e-4;
static const double GRAD_RMS_FACTOR = 6;
static const double GRAD_WORST = 0.8;
static const double BF16_ROUNDING = 1.0 / 512; /* 2^-9 */

static st_backend *cpu; /* reference */
static st_backend *dev; /* under test */

/* ---- bf16-cpu: the CPU's bf16 convolutions with cuDNN's bf16 output rounding ---------------- */

enum { EMU_MAX_PLANS = 512 };
typedef struct emu_plan {
    st_conv_desc desc;   /* as asked (relu included) */
    st_conv_plan *inner; /* the CPU plan of desc without ReLU: the epilogue runs here */
} emu_plan;
static emu_plan emu_plans[EMU_MAX_PLANS];
static int emu_n_plans;
static st_backend emu_backend, *emu_inner;

static emu_plan *emu_of(st_conv_plan *p) { return (emu_plan *)(void *)p; }

static st_conv_plan *emu_conv_plan(st_backend *be, const st_conv_desc *d) {
    (void)be;
    for (int i = 0; i < emu_n_plans; i++)
        if (!memcmp(&emu_plans[i].desc, d, sizeof *d)) return (st_conv_plan *)(void *)&emu_plans[i];
    ST_CHECK(emu_n_plans < EMU_MAX_PLANS, "bf16-cpu: more than %d conv plans", EMU_MAX_PLANS);
    emu_plan *e = &emu_plans[emu_n_plans++];
    e->desc = *d;
    st_conv_desc_finish(&e->desc);
    st_conv_desc plain = e->desc;
    plain.relu = 0;
    plain.y_bf16 = 0; /* the emulated epilogue rounds y */
    e->inner = emu_inner->conv_plan(emu_inner, &plain);
    return (st_conv_plan *)(void *)e;
}

static void round_all(float *x, size_t n) { /* CPU backend memory is host memory */
    for (size_t i = 0; i < n; i++) x[i] = st_bf16_round(x[i]);
}

static size_t emu_numel(st_backend *be, const st_conv_plan *p) {
    (void)be;
    return emu_inner->conv_weights_numel(emu_inner, ((const emu_plan *)(const void *)p)->inner);
}
static void emu_import(st_backend *be, st_conv_plan *p, const float *hwio, float *w) {
    (void)be;
    emu_inner->conv_weights_import(emu_inner, emu_of(p)->inner, hwio, w);
}
static void emu_export(st_backend *be, st_conv_plan *p, const float *w, float *hwio) {
    (void)be;
    emu_inner->conv_weights_export(emu_inner, emu_of(p)->inner, w, hwio);
}
static void emu_fold_bn(st_backend *be, st_conv_plan *p, const float *w, const float *b,
                        const float *gamma, const float *beta, const float *mean,
                        const float *var, float eps, float *w_out, float *b_out) {
    (void)be;
    emu_inner->conv_fold_bn(emu_inner, emu_of(p)->inner, w, b, gamma, beta, mean, var, eps, w_out,
                            b_out);
}

/* conv.cu's forward: y = relu?(bf16(conv) + bias), with y_bf16 rounded to bf16 bit patterns */
static void emu_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                        const float *bias, float *y) {
    (void)be;
    const st_conv_desc *d = &emu_of(p)->desc;
    size_t n = (size_t)d->n * d->p * d->q * d->k;
    float *conv = d->y_bf16 ? ST_MALLOC(n * sizeof *conv) : y; /* y has room for n bf16 only */
    emu_inner->conv_forward(emu_inner, emu_of(p)->inner, x, w, NULL, conv);
    for (size_t i = 0; i < n; i++) {
        float v = st_maybe_relu(st_bf16_round(conv[i]) + (bias ? bias[i % (size_t)d->k] : 0.0f),
                                d->relu);
        if (d->y_bf16) ((uint16_t *)y)[i] = st_bf16_from_float(v);
        else y[i] = v;
    }
    if (conv != y) free(conv);
}

static void emu_backward_data(st_backend *be, st_conv_plan *p, const float *dy, const float *w,
                              float *dx) {
    (void)be;
    const st_conv_desc *d = &emu_of(p)->desc;
    emu_inner->conv_backward_data(emu_inner, emu_of(p)->inner, dy, w, dx);
    round_all(dx, (size_t)d->n * d->h * d->w * d->c);
}

/* dy[i] as the bf16 conv reads it: rounded, or widened when it arrives as bf16 (dy_bf16). */
static float bf16_dy_value(const st_conv_desc *d, const float *dy, size_t i) {
    return d->dy_bf16 ? st_bf16_to_float(((const uint16_t *)dy)[i]) : st_bf16_round(dy[i]);
}

/* conv.cu's backward-filter: dw rounded to bf16, dbias the double column sums of the bf16 dy */
static void emu_backward_filter(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                                float *dw, float *dbias) {
    (void)be;
    const st_conv_desc *d = &emu_of(p)->desc;
    emu_inner->conv_backward_filter(emu_inner, emu_of(p)->inner, x, dy, dw, NULL);
    round_all(dw, emu_numel(be, p));
    if (!dbias) return;
    size_t rows = (size_t)d->n * d->p * d->q;
    for (int k = 0; k < d->k; k++) {
        double sum = 0;
        for (size_t r = 0; r < rows; r++) sum += bf16_dy_value(d, dy, r * (size_t)d->k + (size_t)k);
        dbias[k] = (float)sum;
    }
}

/* Training's backward as kernels/cuda/conv_backward.c runs it: backward-filter, then
 * backward-data, each on its own inputs. */
static void emu_backward(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                         const float *w, float *dw, float *dbias, float *dx,
                         double *data_seconds) {
    if (dw) emu_backward_filter(be, p, x, dy, dw, dbias);
    if (dx) emu_backward_data(be, p, dy, w, dx);
    if (data_seconds) *data_seconds = 0;
}

static void emu_weights_changed(st_backend *be, const float *w, int freed) {
    (void)be; /* the CPU keys its bf16 kernel copies by the backend its conv calls get */
    emu_inner->conv_weights_changed(emu_inner, w, freed);
}

static st_backend *open_bf16_cpu(void) {
    emu_inner = st_backend_open("cpu", 2);
    ST_CHECK(emu_inner, "cpu backend: %s", st_error_get());
    if (!emu_inner->conv_bf16_supported(emu_inner))
        test_skip("bf16-cpu: this CPU has no bf16 convolutions to emulate cuDNN's with");
    emu_backend = *emu_inner;
    emu_backend.conv_plan = emu_conv_plan;
    emu_backend.conv_weights_numel = emu_numel;
    emu_backend.conv_weights_import = emu_import;
    emu_backend.conv_weights_export = emu_export;
    emu_backend.conv_fold_bn = emu_fold_bn;
    emu_backend.conv_forward = emu_forward;
    emu_backend.conv_backward_data = emu_backward_data;
    emu_backend.conv_backward_filter = emu_backward_filter;
    emu_backend.conv_weights_changed = emu_weights_changed;
    emu_backend.conv_backward = emu_backward;
    return &emu_backend;
}

/* ---- buffers ------------------------------------------------------------------------------ */

static float *to_device(st_backend *be, const float *host, size_t n) {
    float *d = be->alloc(be, n * sizeof *d);
    be->upload(be, d, host, n * sizeof *d);
    return d;
}

static float *random_host(size_t n, float scale) {
    float *h = ST_MALLOC(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = urand(-scale, scale);
    return h;
}

static float *rounded_copy(const float *x, size_t n) {
    float *r = ST_MALLOC(n * sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = st_bf16_round(x[i]);
    return r;
}

static float from_bits(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* Finite values whose rounding matters: random, exact ties, denormals (a random bf16 is exact). */
static float interesting_value(size_t i) {
    uint32_t bits = st_float_bits(urand(-2, 2));
    switch (i % 4) {
    case 1: return from_bits((bits & 0xffff0000u) | 0x8000u); /* a tie */
    case 2: return from_bits(bits & 0x807fffffu);             /* a denormal (or zero) */
    default: return from_bits(bits);
    }
}

static size_t x_numel(const st_conv_desc *d) { return (size_t)d->n * d->h * d->w * d->c; }
static size_t y_numel(const st_conv_desc *d) { return (size_t)d->n * d->p * d->q * d->k; }
static size_t w_numel(const st_conv_desc *d) { return (size_t)d->r * d->s * d->c * d->k; }

/* ---- rounding: identity 1x1 convolutions ----------------------------------------------------- */

static void check_rounding(void) {
    st_conv_desc d = {.n = 2, .h = 6, .w = 5, .c = 16, .k = 16, .r = 1, .s = 1, .stride_h = 1,
                      .stride_w = 1, .pad_top = 1, .pad_left = 1, .bf16 = 1};
    st_conv_desc_finish(&d); /* (P, Q) = (H + 1, W + 1): row 0 and column 0 are padding */
    float *x = ST_MALLOC(x_numel(&d) * sizeof *x), *dy = ST_MALLOC(y_numel(&d) * sizeof *dy);
    float hwio[16 * 16] = {0};
    for (int c = 0; c < 16; c++) hwio[c * 16 + c] = 1.0f;
    for (size_t i = 0; i < x_numel(&d); i++) x[i] = interesting_value(i);
    for (size_t i = 0; i < y_numel(&d); i++) dy[i] = interesting_value(i);
    st_conv_plan *p = dev->conv_plan(dev, &d);
    float *w = dev->alloc(dev, dev->conv_weights_numel(dev, p) * sizeof(float));
    float *xd = to_device(dev, x, x_numel(&d)), *dyd = to_device(dev, dy, y_numel(&d));
    float *yd = dev->alloc(dev, y_numel(&d) * sizeof(float));
    float *dxd = dev->alloc(dev, x_numel(&d) * sizeof(float));
    dev->conv_weights_import(dev, p, hwio, w);
    dev->conv_forward(dev, p, xd, w, NULL, yd);
    dev->conv_backward_data(dev, p, dyd, w, dxd);
    float *y = download(dev, yd, y_numel(&d)), *dx = download(dev, dxd, x_numel(&d));
    size_t y_differ = 0, dx_differ = 0;
    for (size_t i = 0; i < y_numel(&d); i++) {
        size_t pixel = i / 16, q = pixel % (size_t)d.q, row = pixel / (size_t)d.q % (size_t)d.p;
        size_t img = pixel / ((size_t)d.q * d.p);
        float want = row == 0 || q == 0
                         ? 0.0f
                         : st_bf16_round(x[((img * d.h + row - 1) * d.w + q - 1) * 16 + i % 16]);
        y_differ += y[i] != want;
    }
    for (size_t i = 0; i < x_numel(&d); i++) {
        size_t pixel = i / 16, col = pixel % (size_t)d.w, row = pixel / (size_t)d.w % (size_t)d.h;
        size_t img = pixel / ((size_t)d.w * d.h);
        size_t from = ((img * d.p + row + 1) * d.q + col + 1) * 16 + i % 16;
        dx_differ += dx[i] != st_bf16_round(dy[from]);
    }
    TEST_CHECK(y_differ == 0, "identity conv forward: %zu of %zu outputs are not bf16(x)", y_differ,
               y_numel(&d));
    TEST_CHECK(dx_differ == 0, "identity conv backward-data: %zu of %zu are not bf16(dy)",
               dx_differ, x_numel(&d));
    printf("rounding: identity conv y %zu/%zu and dx %zu/%zu differ from st_bf16_round\n",
           y_differ, y_numel(&d), dx_differ, x_numel(&d));
    dev->conv_weights_changed(dev, w, 1);
    void *buffers[] = {w, xd, dyd, yd, dxd};
    for (int i = 0; i < 5; i++) dev->free(dev, buffers[i]);
    free(x);
    free(dy);
    free(y);
    free(dx);
}

/* ---- per op: the device's bf16 plan against the CPU's FP32 plan on bf16-rounded inputs ------ */

/* Host results of one conv geometry (dw in HWIO). */
typedef struct conv_results {
    float *y, *dx, *dw;
    float *y_fused, *dbias; /* relu(y + bias) through the fused plan, dbias; NULL when not run */
} conv_results;

static void free_results(conv_results *r) {
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->y_fused);
    free(r->dbias);
}

/* The three passes of d on be (bias: also the fused forward with bias and ReLU, and dbias). */
static conv_results run_conv(st_backend *be, st_conv_desc d, const float *x, const float *hwio,
                             const float *dy, const float *bias) {
    conv_results r = {0};
    st_conv_plan *p = be->conv_plan(be, &d);
    size_t nw = be->conv_weights_numel(be, p);
    float *w = be->alloc(be, nw * sizeof(float)), *dw = be->alloc(be, nw * sizeof(float));
    float *xd = to_device(be, x, x_numel(&d)), *dyd = to_device(be, dy, y_numel(&d));
    float *yd = be->alloc(be, y_numel(&d) * sizeof(float));
    float *dxd = be->alloc(be, x_numel(&d) * sizeof(float));
    float *bd = to_device(be, bias, (size_t)d.k), *dbd = be->alloc(be, (size_t)d.k * sizeof(float));
    be->conv_weights_import(be, p, hwio, w);
    be->conv_forward(be, p, xd, w, NULL, yd);
    r.y = download(be, yd, y_numel(&d));
    be->conv_backward_data(be, p, dyd, w, dxd);
    r.dx = download(be, dxd, x_numel(&d));
    be->conv_backward_filter(be, p, xd, dyd, dw, dbd);
    r.dw = ST_MALLOC(w_numel(&d) * sizeof(float));
    be->conv_weights_export(be, p, dw, r.dw);
    r.dbias = download(be, dbd, (size_t)d.k);
    d.relu = 1;
    st_conv_plan *fused = be->conv_plan(be, &d);
    be->conv_forward(be, fused, xd, w, bd, yd);
    r.y_fused = download(be, yd, y_numel(&d));
    be->conv_weights_changed(be, w, 1);
    void *buffers[] = {w, dw, xd, dyd, yd, dxd, bd, dbd};
    for (int i = 0; i < 8; i++) be->free(be, buffers[i]);
    return r;
}

/* The fused epilogue bit for bit against the host's relu(y + bias) from the device's own y (the
 * ReLU plan's cuDNN descriptors equal the plain plan's, so the heuristics pick the same
 * deterministic algorithm and cuDNN's bf16 y is the same), and dbias against double column sums
 * of the bf16-rounded dy. */
static void check_epilogue(const char *name, const st_conv_desc *d, const conv_results *r,
                           const float *dy, const float *bias) {
    size_t differ = 0;
    for (size_t i = 0; i < y_numel(d); i++)
        differ += r->y_fused[i] != st_relu(r->y[i] + bias[i % (size_t)d->k]);
    TEST_CHECK(differ == 0, "%s: fused bias + ReLU: %zu of %zu outputs differ from relu(y + bias)",
               name, differ, y_numel(d));
    double *sums = calloc((size_t)d->k, sizeof *sums);
    for (size_t i = 0; i < y_numel(d); i++) sums[i % (size_t)d->k] += st_bf16_round(dy[i]);
    float *want = ST_MALLOC((size_t)d->k * sizeof *want);
    for (int k = 0; k < d->k; k++) want[k] = (float)sums[k];
    double err = test_rel_error(r->dbias, want, (size_t)d->k);
    /* double sums of a few thousand terms in another order, stored as FP32: ~1e-8; 1e-5 as
     * test_gpu_ops. Summing the unrounded dy instead is off by ~1e-3. */
    TEST_CHECK(err <= 1e-5, "%s: dbias: relative error %.3g against the bf16 dy's sums", name,
               err);
    free(sums);
    free(want);
}

static void check_op(const char *name, st_conv_desc d) {
    d.bf16 = 0;
    st_conv_desc_finish(&d);
    float *x = random_host(x_numel(&d), 1), *hwio = random_host(w_numel(&d), 0.1f);
    float *dy = random_host(y_numel(&d), 1), *bias = random_host((size_t)d.k, 0.5f);
    float *x16 = rounded_copy(x, x_numel(&d)), *w16 = rounded_copy(hwio, w_numel(&d));
    float *dy16 = rounded_copy(dy, y_numel(&d));
    conv_results want = run_conv(cpu, d, x16, w16, dy16, bias);
    d.bf16 = 1;
    conv_results got = run_conv(dev, d, x, hwio, dy, bias);
    const float *pairs[3][2] = {{got.y, want.y}, {got.dx, want.dx}, {got.dw, want.dw}};
    const size_t counts[3] = {y_numel(&d), x_numel(&d), w_numel(&d)};
    static const char *const what[3] = {"forward y", "backward-data dx", "backward-filter dw"};
    for (int i = 0; i < 3; i++) {
        double err = test_rel_error(pairs[i][0], pairs[i][1], counts[i]);
        printf("%s: %s relative error %.3g\n", name, what[i], err);
        TEST_CHECK(err <= OP_TOL, "%s: %s: relative error by norm %.3g > %.3g", name, what[i],
                   err, OP_TOL);
    }
    check_epilogue(name, &d, &got, dy, bias);
    free_results(&want);
    free_results(&got);
    float *buffers[] = {x, hwio, dy, bias, x16, w16, dy16};
    for (int i = 0; i < 7; i++) free(buffers[i]);
}

/* ---- the kernel's bf16 copy follows its buffer ---------------------------------------------- */

/* Forward of plan p on device input xd with kernel w into a host copy. */
static float *forward_host(st_conv_plan *p, const st_conv_desc *d, const float *xd,
                           const float *w) {
    float *yd = dev->alloc(dev, y_numel(d) * sizeof(float));
    dev->conv_forward(dev, p, xd, w, NULL, yd);
    float *y = download(dev, yd, y_numel(d));
    dev->free(dev, yd);
    return y;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return !memcmp(a, b, n * sizeof *a);
}

static void check_cache(void) {
    st_conv_desc d = {.n = 2, .h = 9, .w = 9, .c = 32, .k = 32, .r = 3, .s = 3, .stride_h = 1,
                      .stride_w = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1,
                      .bf16 = 1};
    st_conv_desc_finish(&d);
    st_conv_plan *p = dev->conv_plan(dev, &d);
    size_t nw = dev->conv_weights_numel(dev, p);
    float *x = random_host(x_numel(&d), 1), *h1 = random_host(w_numel(&d), 0.1f);
    float *h2 = random_host(w_numel(&d), 0.1f), *xd = to_device(dev, x, x_numel(&d));
    float *w = dev->alloc(dev, nw * sizeof(float)), *fresh1 = dev->alloc(dev, nw * sizeof(float));
    float *fresh2 = dev->alloc(dev, nw * sizeof(float));
    dev->conv_weights_import(dev, p, h1, w);
    dev->conv_weights_import(dev, p, h1, fresh1);
    dev->conv_weights_import(dev, p, h2, fresh2);
    float *y1 = forward_host(p, &d, xd, w); /* w's copy is made and cached here */
    dev->conv_weights_import(dev, p, h2, w);
    float *y2 = forward_host(p, &d, xd, w), *y2_fresh = forward_host(p, &d, xd, fresh2);
    TEST_CHECK(!same_bits(y1, y2, y_numel(&d)), "cache: other weights gave the same output");
    TEST_CHECK(same_bits(y2, y2_fresh, y_numel(&d)),
               "cache: after conv_weights_import the old bf16 kernel was read");
    dev->copy(dev, w, fresh1, nw * sizeof(float)); /* a raw write, announced */
    dev->conv_weights_changed(dev, w, 0);
    float *y3 = forward_host(p, &d, xd, w);
    TEST_CHECK(same_bits(y3, y1, y_numel(&d)),
               "cache: after conv_weights_changed the old bf16 kernel was read");
    float *device_buffers[] = {w, fresh1, fresh2};
    for (int i = 0; i < 3; i++) {
        dev->conv_weights_changed(dev, device_buffers[i], 1);
        dev->free(dev, device_buffers[i]);
    }
    dev->free(dev, xd);
    float *host_buffers[] = {x, h1, h2, y1, y2, y2_fresh, y3};
    for (int i = 0; i < 7; i++) free(host_buffers[i]);
}

/* ---- activations: operands that arrive as bf16 (x_bf16, dy_bf16, y_bf16, dx_bf16) ----------- */

/* Device copy of x rounded to bf16 on the host, as bf16 bit patterns (what a BN with y_bf16 or
 * dx_bf16 writes); the ops take it as float *. */
static float *to_device_bf16(st_backend *be, const float *x, size_t n) {
    uint16_t *h = ST_MALLOC(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = st_bf16_from_float(x[i]);
    float *d = be->alloc(be, n * sizeof *h);
    be->upload(be, d, h, n * sizeof *h);
    free(h);
    return d;
}

static uint16_t *download_bf16(st_backend *be, const float *src, size_t n) {
    uint16_t *h = ST_MALLOC(n * sizeof *h);
    be->download(be, h, src, n * sizeof *h);
    return h;
}

/* Host results of a bf16 plan's forward, training backward (conv_backward: dw, dbias, dx) and
 * backward-data alone; dw raw in the backend layout, which plans differing in the flags share. */
typedef struct activation_results {
    float *y, *dw, *dbias, *dx, *dx_data;
} activation_results;

static activation_results run_activation_conv(const st_conv_desc *d, const float *xd,
                                              const float *dyd, const float *w) {
    st_conv_plan *p = dev->conv_plan(dev, d);
    size_t nw = dev->conv_weights_numel(dev, p);
    float *yd = dev->alloc(dev, y_numel(d) * sizeof(float));
    float *dxd = dev->alloc(dev, x_numel(d) * sizeof(float));
    float *dwd = dev->alloc(dev, nw * sizeof(float));
    float *dbd = dev->alloc(dev, (size_t)d->k * sizeof(float));
    activation_results r;
    dev->conv_forward(dev, p, xd, w, NULL, yd);
    r.y = download(dev, yd, y_numel(d));
    dev->conv_backward(dev, p, xd, dyd, w, dwd, dbd, dxd, NULL);
    r.dw = download(dev, dwd, nw);
    r.dbias = download(dev, dbd, (size_t)d->k);
    r.dx = download(dev, dxd, x_numel(d));
    dev->conv_backward_data(dev, p, dyd, w, dxd);
    r.dx_data = download(dev, dxd, x_numel(d));
    void *buffers[] = {yd, dxd, dwd, dbd};
    for (int i = 0; i < 4; i++) dev->free(dev, buffers[i]);
    return r;
}

static void free_activation_results(activation_results *r) {
    float *fields[] = {r->y, r->dw, r->dbias, r->dx, r->dx_data};
    for (int i = 0; i < 5; i++) free(fields[i]);
}

/* Values of the forward of d (x_bf16) with y_bf16 that are not st_bf16_from_float of the same
 * forward's FP32 y; bias and the fused ReLU as d says. */
static size_t y_bf16_mismatches(st_conv_desc d, const float *xd16, const float *w,
                                const float *bias) {
    size_t n = y_numel(&d);
    float *yd = dev->alloc(dev, n * sizeof(float)), *y16d = dev->alloc(dev, n * sizeof(uint16_t));
    dev->conv_forward(dev, dev->conv_plan(dev, &d), xd16, w, bias, yd);
    d.y_bf16 = 1;
    dev->conv_forward(dev, dev->conv_plan(dev, &d), xd16, w, bias, y16d);
    float *y = download(dev, yd, n);
    uint16_t *y16 = download_bf16(dev, y16d, n);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += y16[i] != st_bf16_from_float(y[i]);
    dev->free(dev, yd);
    dev->free(dev, y16d);
    free(y);
    free(y16);
    return differ;
}

/* A bf16 plan given bf16(x) and bf16(dy) as bit patterns (x_bf16, dy_bf16) against the same
 * plan without the flags given the FP32 x and dy: every output bit for bit, since the device
 * rounds with the host's st_bf16_from_float and the bias gradient sums the bf16 dy either way. */
static void check_conv_activations(const char *name, st_conv_desc d) {
    d.bf16 = 1;
    st_conv_desc_finish(&d);
    st_conv_desc d16 = d;
    d16.x_bf16 = d16.dy_bf16 = 1;
    float *x = random_host(x_numel(&d), 1), *hwio = random_host(w_numel(&d), 0.1f);
    float *dy = random_host(y_numel(&d), 1);
    st_conv_plan *p = dev->conv_plan(dev, &d);
    size_t nw = dev->conv_weights_numel(dev, p);
    float *w = dev->alloc(dev, nw * sizeof(float));
    dev->conv_weights_import(dev, p, hwio, w);
    float *xd = to_device(dev, x, x_numel(&d)), *dyd = to_device(dev, dy, y_numel(&d));
    float *xd16 = to_device_bf16(dev, x, x_numel(&d));
    float *dyd16 = to_device_bf16(dev, dy, y_numel(&d));
    activation_results want = run_activation_conv(&d, xd, dyd, w);
    activation_results got = run_activation_conv(&d16, xd16, dyd16, w);
    const float *pairs[5][2] = {{got.y, want.y}, {got.dw, want.dw}, {got.dbias, want.dbias},
                                {got.dx, want.dx}, {got.dx_data, want.dx_data}};
    const size_t counts[5] = {y_numel(&d), nw, (size_t)d.k, x_numel(&d), x_numel(&d)};
    static const char *const what[5] = {"forward y", "backward dw", "backward dbias",
                                        "backward dx", "backward-data dx"};
    int equal = 0;
    for (int i = 0; i < 5; i++) {
        int same = same_bits(pairs[i][0], pairs[i][1], counts[i]);
        equal += same;
        TEST_CHECK(same, "%s: %s with x_bf16/dy_bf16 differs from the FP32 operands' (%.3g)",
                   name, what[i], test_rel_error(pairs[i][0], pairs[i][1], counts[i]));
    }
    printf("activations %s: %d of 5 outputs (y, dw, dbias, dx twice) from bf16 operands equal the "
           "FP32 operands' bit for bit\n", name, equal);
    float *bias = random_host((size_t)d.k, 0.5f), *bd = to_device(dev, bias, (size_t)d.k);
    size_t plain = y_bf16_mismatches(d16, xd16, w, NULL);
    d16.relu = 1;
    size_t fused = y_bf16_mismatches(d16, xd16, w, bd);
    TEST_CHECK(plain == 0 && fused == 0,
               "%s: forward with y_bf16: %zu (plain) and %zu (bias, ReLU) of %zu values are not "
               "bf16(y)", name, plain, fused, y_numel(&d));
    dev->free(dev, bd);
    free(bias);
    free_activation_results(&want);
    free_activation_results(&got);
    dev->conv_weights_changed(dev, w, 1);
    void *buffers[] = {w, xd, dyd, xd16, dyd16};
    for (int i = 0; i < 5; i++) dev->free(dev, buffers[i]);
    free(x);
    free(hwio);
    free(dy);
}

/* A batch norm's device buffers: x, gamma, beta in; running stats (reset per call), saved stats. */
typedef struct bn_buffers {
    float *x, *gamma, *beta, *running_mean, *running_var, *save_mean, *save_rstd;
    float *host_running; /* (2C) host: the running mean, then variance, every forward starts from */
} bn_buffers;

/* y (room for rows*C floats) from a training forward (train) or an inference forward. */
static void bn_forward(const st_bn_desc *d, const bn_buffers *b, int train, float *y) {
    size_t c = (size_t)d->c;
    dev->upload(dev, b->running_mean, b->host_running, c * sizeof(float));
    dev->upload(dev, b->running_var, b->host_running + c, c * sizeof(float));
    if (train)
        dev->bn_forward_train(dev, d, b->x, b->gamma, b->beta, y, b->save_mean, b->save_rstd,
                              b->running_mean, b->running_var);
    else
        dev->bn_forward_infer(dev, d, b->x, b->gamma, b->beta, b->running_mean, b->running_var,
                              y);
}

/* Both forwards with y_bf16 write st_bf16_from_float of the FP32 y, bit for bit; returns the
 * training forward's bf16 y (device), whose statistics are in b->save_mean / b->save_rstd. */
static float *check_bn_forward(st_bn_desc d, const bn_buffers *b) {
    size_t n = (size_t)d.rows * d.c;
    float *y = dev->alloc(dev, n * sizeof(float)), *y16 = dev->alloc(dev, n * sizeof(uint16_t));
    static const char *const what[2] = {"bn_forward_infer", "bn_forward_train"};
    for (int train = 0; train < 2; train++) {
        d.y_bf16 = 0;
        bn_forward(&d, b, train, y);
        d.y_bf16 = 1;
        bn_forward(&d, b, train, y16);
        float *want = download(dev, y, n);
        uint16_t *got = download_bf16(dev, y16, n);
        size_t differ = 0;
        for (size_t i = 0; i < n; i++) differ += got[i] != st_bf16_from_float(want[i]);
        TEST_CHECK(differ == 0, "activations: %s with y_bf16: %zu of %zu values are not bf16(y)",
                   what[train], differ, n);
        free(want);
        free(got);
    }
    dev->free(dev, y);
    return y16;
}

/* bn_backward of d (flags as given) as host floats: dx (FP32, or its bf16 widened), then dgamma
 * and dbeta (C each). */
static float *bn_backward_host(const st_bn_desc *d, const bn_buffers *b, const float *y,
                               const float *dy) {
    size_t n = (size_t)d->rows * d->c, c = (size_t)d->c;
    float *dx = dev->alloc(dev, n * sizeof(float)), *dgb = dev->alloc(dev, 2 * c * sizeof(float));
    dev->bn_backward(dev, d, b->x, y, dy, b->gamma, b->save_mean, b->save_rstd, dx, dgb, dgb + c);
    float *h = ST_MALLOC((n + 2 * c) * sizeof *h);
    if (d->dx_bf16) {
        uint16_t *dx16 = download_bf16(dev, dx, n);
        for (size_t i = 0; i < n; i++) h[i] = st_bf16_to_float(dx16[i]);
        free(dx16);
    } else {
        dev->download(dev, h, dx, n * sizeof *h);
    }
    dev->download(dev, h + n, dgb, 2 * c * sizeof *h);
    dev->free(dev, dx);
    dev->free(dev, dgb);
    return h;
}

/* Every bn op of d on b as host floats: the training forward's y, saved mean and rstd, running
 * mean and variance, the backward's dx, dgamma and dbeta (ReLU mask: that y), the inference
 * forward's y. */
static float *bn_all_ops(const st_bn_desc *d, const bn_buffers *b, const float *dyd) {
    size_t n = (size_t)d->rows * d->c, c = (size_t)d->c;
    float *h = ST_MALLOC((3 * n + 6 * c) * sizeof *h), *y = dev->alloc(dev, n * sizeof(float));
    bn_forward(d, b, 1, y);
    dev->download(dev, h, y, n * sizeof *h);
    const float *stats[4] = {b->save_mean, b->save_rstd, b->running_mean, b->running_var};
    for (int i = 0; i < 4; i++) dev->download(dev, h + n + i * c, stats[i], c * sizeof *h);
    float *backward = bn_backward_host(d, b, y, dyd);
    memcpy(h + n + 4 * c, backward, (n + 2 * c) * sizeof *h);
    bn_forward(d, b, 0, y);
    dev->download(dev, h + 2 * n + 6 * c, y, n * sizeof *h);
    dev->free(dev, y);
    free(backward);
    return h;
}

/* bn ops reading x as bf16 (x_bf16: a bf16 conv's y_bf16 output) against the same ops given that
 * x widened to FP32 (d as given): every output bit for bit (the same values, widened in the op). */
static void check_bn_input_bf16(st_bn_desc d, const float *x, const bn_buffers *b,
                                const float *dyd) {
    size_t n = (size_t)d.rows * d.c, c = (size_t)d.c;
    float *x_wide = rounded_copy(x, n);
    bn_buffers wide = *b, narrow = *b;
    wide.x = to_device(dev, x_wide, n);
    narrow.x = to_device_bf16(dev, x, n);
    float *want = bn_all_ops(&d, &wide, dyd);
    d.x_bf16 = 1;
    float *got = bn_all_ops(&d, &narrow, dyd);
    TEST_CHECK(same_bits(got, want, 3 * n + 6 * c),
               "activations: bn ops with x_bf16 differ from the same ops given x widened (%.3g)",
               test_rel_error(got, want, 3 * n + 6 * c));
    dev->free(dev, wide.x);
    dev->free(dev, narrow.x);
    free(x_wide);
    free(want);
    free(got);
}

/* bn ops with bf16 storage: the forwards write bf16(y); backward given the bf16 y equals backward
 * given that y widened to FP32 (the ReLU mask of the value the conv read), and with dx_bf16 writes
 * bf16(dx), dgamma and dbeta unchanged: all bit for bit (the same FP32 computation, only the
 * stores differ). */
static void check_bn_activations(void) {
    st_bn_desc d = {.rows = 2 * 7 * 9, .c = 40, .eps = 1e-5f, .momentum = 0.1f, .relu = 1};
    size_t n = (size_t)d.rows * d.c, c = (size_t)d.c;
    float *x = random_host(n, 2), *gamma = random_host(c, 1), *beta = random_host(c, 0.5f);
    float *dy = random_host(n, 1), *host_running = ST_MALLOC(2 * c * sizeof *host_running);
    for (size_t i = 0; i < c; i++) host_running[i] = 0.1f, host_running[c + i] = 1.5f;
    bn_buffers b = {.x = to_device(dev, x, n), .gamma = to_device(dev, gamma, c),
                    .beta = to_device(dev, beta, c),
                    .running_mean = dev->alloc(dev, c * sizeof(float)),
                    .running_var = dev->alloc(dev, c * sizeof(float)),
                    .save_mean = dev->alloc(dev, c * sizeof(float)),
                    .save_rstd = dev->alloc(dev, c * sizeof(float)),
                    .host_running = host_running};
    float *y16 = check_bn_forward(d, &b);
    uint16_t *y16_host = download_bf16(dev, y16, n);
    float *y_wide = ST_MALLOC(n * sizeof *y_wide);
    size_t masked = 0;
    for (size_t i = 0; i < n; i++) masked += (y_wide[i] = st_bf16_to_float(y16_host[i])) <= 0;
    float *y_wide_d = to_device(dev, y_wide, n), *dyd = to_device(dev, dy, n);
    float *want = bn_backward_host(&d, &b, y_wide_d, dyd);
    d.y_bf16 = 1;
    float *got = bn_backward_host(&d, &b, y16, dyd);
    TEST_CHECK(same_bits(got, want, n + 2 * c),
               "activations: bn_backward given the bf16 y differs from given it widened");
    d.dx_bf16 = 1;
    float *got16 = bn_backward_host(&d, &b, y16, dyd);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += st_float_bits(got16[i]) != st_float_bits(st_bf16_round(want[i]));
    TEST_CHECK(differ == 0, "activations: bn_backward with dx_bf16: %zu of %zu are not bf16(dx)",
               differ, n);
    TEST_CHECK(same_bits(got16 + n, want + n, 2 * c),
               "activations: bn_backward with dx_bf16: dgamma or dbeta differ");
    /* beta in [-0.5, 0.5] against a unit-variance xhat: the ReLU masks about half */
    TEST_CHECK(masked > n / 4 && masked < 3 * n / 4,
               "activations: the ReLU masks %zu of %zu values: the mask is barely exercised",
               masked, n);
    printf("activations bn: forwards with y_bf16, backward from the bf16 y (%zu of %zu masked), "
           "dx_bf16: %zu of %zu dx differ from bf16(dx)\n", masked, n, differ, n);
    d.y_bf16 = d.dx_bf16 = 0;
    check_bn_input_bf16(d, x, &b, dyd);
    float *device_buffers[] = {b.x, b.gamma, b.beta, b.running_mean, b.running_var, b.save_mean,
                               b.save_rstd, y16, y_wide_d, dyd};
    for (int i = 0; i < 10; i++) dev->free(dev, device_buffers[i]);
    float *host_buffers[] = {x, gamma, beta, dy, host_running, y_wide, want, got, got16};
    for (int i = 0; i < 9; i++) free(host_buffers[i]);
    free(y16_host);
}

/* The activations case: conv ops on bf16 operands (asymmetric padding: padded from the bf16
 * input; symmetric: read in place) and bn ops with bf16 storage, against the same device without
 * the flags. */
static void check_activations(void) {
    check_conv_activations("3x3 stride 2, pads 0/1",
                           (st_conv_desc){.n = 2, .h = 15, .w = 16, .c = 32, .k = 64, .r = 3,
                                          .s = 3, .stride_h = 2, .stride_w = 2, .pad_bottom = 1,
                                          .pad_right = 1});
    check_conv_activations("3x3 stride 1, pads 1/1",
                           (st_conv_desc){.n = 2, .h = 9, .w = 9, .c = 64, .k = 32, .r = 3, .s = 3,
                                          .stride_h = 1, .stride_w = 1, .pad_top = 1,
                                          .pad_bottom = 1, .pad_left = 1, .pad_right = 1});
    check_bn_activations();
}

/* ---- whole models ---------------------------------------------------------------------------- */

static st_model *create(st_backend *be, const char *arch, int side, int batch,
                        st_precision precision) {
    st_model_config cfg = {.arch = arch, .batch = batch, .height = side, .width = side,
                           .training = 1, .freeze_until = "none", .pool = ST_GPOOL_AVG,
                           .gem_p = 3.0f, .bn_momentum = 0.1f, .precision = precision};
    st_model *m = st_model_create(be, &cfg, 41);
    ST_CHECK(m, "%s: st_model_create on %s: %s", arch, be->name, st_error_get());
    return m;
}

/* A training forward and backward of images with d_features as the gradient. */
static void train_pass(st_model *m, const float *images, const float *d_features) {
    st_backend *be = m->backend;
    int batch = m->config.batch;
    be->upload(be, m->input.data, images, st_numel(m->input) * sizeof(float));
    st_model_forward(m, batch, 1);
    be->upload(be, m->d_features.data, d_features, st_numel(m->d_features) * sizeof(float));
    st_model_backward(m, batch);
    be->sync(be);
}

static double features_error(st_model *mr, st_model *md) {
    size_t n = st_numel(mr->features);
    float *want = download(mr->backend, mr->features.data, n);
    float *got = download(md->backend, md->features.data, n);
    double err = test_rel_error(got, want, n);
    free(want);
    free(got);
    return err;
}

/* RMS over mr's trainable tensors of md's gradient errors against mr's (tensor_error of
 * gpu_parity.h: analytically zero conv-bias gradients measured against their kernel); the
 * largest into *worst (named in where). */
static double gradient_error_rms(st_model *mr, st_model *md, double *worst, char *where,
                                 size_t where_size) {
    double sum = 0;
    int count = 0;
    *worst = 0;
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, "bf16 gradients");
        if (!p->grad || !q->grad) continue;
        st_param *kernel = strcmp(p->weight, "bias") ? NULL
                                                     : st_model_find_param(mr, p->layer, "kernel");
        float *want = param_download(mr, p, p->grad), *got = param_download(md, q, q->grad);
        float *kernel_want = kernel ? param_download(mr, kernel, kernel->grad) : NULL;
        double err = tensor_error(p, got, want, kernel_want, kernel ? kernel->numel : 0);
        sum += err * err;
        count++;
        if (err > *worst) {
            *worst = err;
            snprintf(where, where_size, "%s/%s", p->layer, p->weight);
        }
        free(want);
        free(got);
        free(kernel_want);
    }
    TEST_CHECK(count > 0, "no trainable parameter");
    return sqrt(sum / (count ? count : 1));
}

/* One training forward and backward of arch on the device in bf16 against the CPU in FP32, with a
 * CPU FP32 run on a 2^-9-perturbed input as the yardstick. */
static void check_model(const char *arch, int side, int batch) {
    st_model *mr = create(cpu, arch, side, batch, ST_PRECISION_FP32);
    st_model *mn = create(cpu, arch, side, batch, ST_PRECISION_FP32);
    st_model *md = create(dev, arch, side, batch, ST_PRECISION_BF16);
    TEST_CHECK(md->config.precision == ST_PRECISION_BF16, "%s: bf16 on %s fell back to fp32", arch,
               dev->name);
    randomize_parameters(mr);
    copy_params_by_name(mn, mr, arch);
    copy_params_by_name(md, mr, arch);
    size_t n_images = st_numel(mr->input), n_features = st_numel(mr->d_features);
    float *images = random_host(n_images, 1.5f);
    float *d_features = random_host(n_features, 1.0f / batch);
    train_pass(mr, images, d_features);
    train_pass(md, images, d_features);
    for (size_t i = 0; i < n_images; i++) images[i] *= (float)(1 + BF16_ROUNDING * urand(-1, 1));
    train_pass(mn, images, d_features);
    double ferr = features_error(mr, md), ferr_nudged = features_error(mr, mn);
    double worst, worst_nudged;
    char where[200] = "", where_nudged[200] = "";
    double rms = gradient_error_rms(mr, md, &worst, where, sizeof where);
    double rms_nudged =
        gradient_error_rms(mr, mn, &worst_nudged, where_nudged, sizeof where_nudged);
    printf("%s bf16 on %s: features %.3g (%.2fx the perturbed input's %.3g); gradients RMS %.3g "
           "(%.2fx the perturbed input's %.3g), worst %.3g (%s; perturbed input: %.3g at %s)\n",
           arch, dev->name, ferr, ferr / ferr_nudged, ferr_nudged, rms, rms / rms_nudged,
           rms_nudged, worst, where, worst_nudged, where_nudged);
    TEST_CHECK(ferr <= FEATURE_TOL, "%s: features: relative error %.3g > %.3g", arch, ferr,
               FEATURE_TOL);
    TEST_CHECK(ferr >= FEATURE_MIN, "%s: features within %.3g of fp32: bf16 seems not in effect",
               arch, ferr);
    TEST_CHECK(rms <= GRAD_RMS_FACTOR * rms_nudged,
               "%s: gradients: RMS error %.3g > %g x %.3g (the perturbed input's)", arch, rms,
               GRAD_RMS_FACTOR, rms_nudged);
    TEST_CHECK(worst <= GRAD_WORST, "%s: gradient %s off by %.3g", arch, where, worst);
    free(images);
    free(d_features);
    st_model_free(mr);
    st_model_free(mn);
    st_model_free(md);
}

/* Features (host) of an inference-mode forward. */
static float *infer_features(st_model *m, const float *images) {
    m->backend->upload(m->backend, m->input.data, images, st_numel(m->input) * sizeof(float));
    st_model_forward(m, m->config.batch, 0);
    return download(m->backend, m->features.data, st_numel(m->features));
}

/* Two SGD steps on the device in bf16, then a fresh model with the trained parameters: the same
 * features bit for bit, or a step left a stale bf16 kernel copy behind. */
static void check_steps(void) {
    st_model *a = create(dev, "tv_resnet18", 64, 4, ST_PRECISION_BF16);
    float *images = random_host(st_numel(a->input), 1.0f);
    float *d_features = random_host(st_numel(a->d_features), 0.25f);
    float *before = infer_features(a, images); /* every kernel's bf16 copy is made here */
    for (int step = 0; step < 2; step++) {
        train_pass(a, images, d_features);
        for (int i = 0; i < a->n_params; i++) {
            st_param *p = &a->params[i];
            if (p->grad) dev->axpy(dev, p->value, -0.05f, p->grad, st_param_storage_numel(a, p));
        }
    }
    float *after = infer_features(a, images);
    st_model *b = create(dev, "tv_resnet18", 64, 4, ST_PRECISION_BF16);
    copy_params_by_name(b, a, "steps");
    float *fresh = infer_features(b, images);
    size_t nf = st_numel(a->features);
    TEST_CHECK(!same_bits(before, after, nf), "steps: two SGD steps left the features unchanged");
    TEST_CHECK(same_bits(after, fresh, nf), "steps: the trained model's features differ from a "
                                            "fresh copy's: a stale bf16 kernel was read");
    float *host_buffers[] = {images, d_features, before, after, fresh};
    for (int i = 0; i < 5; i++) free(host_buffers[i]);
    st_model_free(a);
    st_model_free(b);
}

/* The device under test: cuda (skips without a device or bf16), or the bf16-cpu emulation. */
static st_backend *open_device(const char *name) {
    if (!strcmp(name, "bf16-cpu")) return open_bf16_cpu();
    st_backend *be = st_backend_open(name, 0);
    if (!be) test_skip_no_gpu(st_error_get()); /* a failure under SIMTUNE_REQUIRE_GPU=1 */
    if (!be->conv_bf16_supported(be)) {
        st_backend_close(be);
        test_skip_no_gpu("the device has no bf16 convolutions (compute capability below 8.0)");
    }
    return be;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "cuda";
    unsetenv("SIMTUNE_CUDA_TF32"); /* the replaced variable stops the backend opening */
    dev = open_device(name);
    cpu = st_backend_open("cpu", 0);
    ST_CHECK(cpu, "cpu backend: %s", st_error_get());
    check_rounding();
    check_op("3x3 stride 1", (st_conv_desc){.n = 4, .h = 14, .w = 14, .c = 64, .k = 96, .r = 3,
                                            .s = 3, .stride_h = 1, .stride_w = 1, .pad_top = 1,
                                            .pad_bottom = 1, .pad_left = 1, .pad_right = 1});
    check_op("3x3 stride 2, pads 0/1", (st_conv_desc){.n = 2, .h = 15, .w = 16, .c = 32, .k = 64,
                                                      .r = 3, .s = 3, .stride_h = 2, .stride_w = 2,
                                                      .pad_bottom = 1, .pad_right = 1});
    check_cache();
    check_activations();
    check_model("tv_resnet18", 128, 8);
    check_model("resnet50", 64, 4);
    check_steps();
    st_backend_close(cpu);
    st_backend_close(dev == &emu_backend ? emu_inner : dev);
    return test_finish("test_gpu_bf16");
}
