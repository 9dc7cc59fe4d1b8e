/*
 * test_bf16_operands.c: bf16 operands passed between bf16 convs and batch norms on the CPU
 * backend (st_conv_desc.x_bf16 / y_bf16 / dy_bf16, st_bn_desc.x_bf16 / y_bf16 / dx_bf16;
 * kernels/cpu/batchnorm.c, conv.c, bf16.c) and where the model plans them (infer/model/plan.c,
 * memory.c). The same arithmetic on the same values, stored differently: every check is exact.
 *
 *   bn      training and inference forward with a fused ReLU (100 rows x 40 channels: a tail of 8
 *           past the 16-lane vectors) from x holding bf16 values, given as FP32 or as bf16: the
 *           same statistics and moving statistics, and a bf16 y is st_bf16_from_float of the FP32
 *           y, bit for bit. Backward from bf16 x and/or the bf16 y (its mask) equals the FP32
 *           backward given y widened from it: dx, dgamma, dbeta bit for bit, and a bf16 dx is
 *           st_bf16_from_float of the FP32 dx.
 *   conv    two bf16 geometries (3x3 stride 2 with TF-style asymmetric padding and a bias; 1x1
 *           with a fused ReLU): the forward from x given as bf16, writing y as bf16, gives
 *           st_bf16_from_float of the plain plan's y (which rounds x itself and writes FP32), and
 *           conv_backward from bf16 x and dy equals it from FP32 x and dy: dw, dbias, dx bit for
 *           bit. The bf16-operand plan shares the weight layout of the plain one.
 *   model   resnet50 (Keras; 32 px, batch 2, all trainable) and tv_resnet18 frozen to
 *           conv3_block1_out, bf16: a conv or BN reads its input as bf16 exactly when the
 *           producer stores it so, nothing else reads a bf16 output; the bf16 outputs are every
 *           conv feeding BNs or convs only (53; tv_resnet18: 12 trainable, and 3 folded frozen
 *           convs whose ReLU output feeds a conv) and every ReLU'd BN feeding convs only (the
 *           first two of each bottleneck, the first of each basic block: 32 and 5); every BN
 *           behind a trainable conv writes its dy as bf16 (53 and 12); and the activations arena
 *           shrinks by half of the kept bf16 outputs' bytes against the same model in FP32.
 *           resnet50v2 (pre-activation): every BN but post_bn feeds convs only (48 bf16
 *           outputs), the convs before a BN write bf16 (conv1, conv2 of each block: 32), those
 *           before an add or the stem's max-pool FP32, and the BNs behind convs write bf16 dy (32).
 *           The delimiting layer's map stays FP32 (what `embed --layer` reads): tv_resnet18 frozen
 *           to conv3_block1_1_relu, a folded conv whose ReLU output only a conv reads, keeps it
 *           FP32 (15 bf16 conv outputs, 5 BN, 13 BN dx; the block's projection conv comes before
 *           the delimiting layer, so it is frozen too).
 * Skips (77) where oneDNN has no avx512_core_bf16 (no bf16 plans, so no bf16 operands).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../infer/model/layer.h"
#include "../kernels/check.h"
#include "../kernels/math/bf16.h"
#include "test_util.h"

static float *random_floats(size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)test_uniform();
    return x;
}

static uint16_t *rounded(const float *x, size_t n) {
    uint16_t *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = st_bf16_from_float(x[i]);
    return h;
}

static float *widened(const uint16_t *h, size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = st_bf16_to_float(h[i]);
    return x;
}

/* Index of the first difference of two buffers of n elements of `size` bytes, or -1. */
static long first_difference(const void *a, const void *b, size_t n, size_t size) {
    for (size_t i = 0; i < n; i++)
        if (memcmp((const char *)a + i * size, (const char *)b + i * size, size)) return (long)i;
    return -1;
}

#define CHECK_SAME(what, a, b, n)                                                                \
    do {                                                                                         \
        long at_ = first_difference(a, b, n, sizeof *(a));                                       \
        TEST_CHECK(at_ < 0, "%s: differs at [%ld] of %zu", what, at_, (size_t)(n));              \
    } while (0)

/* ---- bn --------------------------------------------------------------------------------- */

enum { BN_ROWS = 100, BN_C = 40 };

/* x holds bf16 values (x_wide, FP32) so that every variant reads the same numbers: x16 is the
 * same values as bf16 bit patterns, what a conv with y_bf16 hands a BN. */
typedef struct {
    float *x_wide, *gamma, *beta, *dy;
    uint16_t *x16;
} bn_inputs;

static const float *bn_x(const bn_inputs *in, int x_bf16) {
    return x_bf16 ? (const float *)in->x16 : in->x_wide;
}

/* Training and inference forward with bf16 x and/or y against the FP32 op (variant 0). */
static void check_bn_forward(st_backend *be, const bn_inputs *in) {
    const size_t n = (size_t)BN_ROWS * BN_C;
    const int variants[4][2] = {{0, 0}, {0, 1}, {1, 1}, {1, 0}}; /* x_bf16, y_bf16 */
    float *y[4], stats[4][4][BN_C];
    for (int v = 0; v < 4; v++) {
        st_bn_desc d = {.rows = BN_ROWS, .c = BN_C, .eps = 1e-5f, .momentum = 0.1f, .relu = 1,
                        .x_bf16 = variants[v][0], .y_bf16 = variants[v][1]};
        y[v] = malloc(n * sizeof(float)); /* a bf16 y uses the first half */
        float *mean = stats[v][2], *var = stats[v][3];
        for (int c = 0; c < BN_C; c++) mean[c] = 0.25f, var[c] = 2.0f;
        be->bn_forward_train(be, &d, bn_x(in, d.x_bf16), in->gamma, in->beta, y[v], stats[v][0],
                             stats[v][1], mean, var);
    }
    uint16_t *want16 = rounded(y[0], n);
    for (int v = 1; v < 4; v++) {
        char what[120];
        snprintf(what, sizeof what, "bn_forward_train x_bf16 %d y_bf16 %d: y", variants[v][0],
                 variants[v][1]);
        if (variants[v][1]) CHECK_SAME(what, (uint16_t *)y[v], want16, n);
        else CHECK_SAME(what, y[v], y[0], n);
        snprintf(what, sizeof what, "bn_forward_train x_bf16 %d y_bf16 %d: statistics",
                 variants[v][0], variants[v][1]);
        CHECK_SAME(what, &stats[v][0][0], &stats[0][0][0], (size_t)4 * BN_C);
    }
    st_bn_desc d = {.rows = BN_ROWS, .c = BN_C, .eps = 1e-5f, .relu = 1};
    be->bn_forward_infer(be, &d, in->x_wide, in->gamma, in->beta, stats[0][2], stats[0][3], y[0]);
    d.x_bf16 = d.y_bf16 = 1;
    be->bn_forward_infer(be, &d, bn_x(in, 1), in->gamma, in->beta, stats[0][2], stats[0][3], y[1]);
    free(want16);
    want16 = rounded(y[0], n);
    CHECK_SAME("bn_forward_infer x_bf16 y_bf16: y", (uint16_t *)y[1], want16, n);
    free(want16);
    for (int v = 0; v < 4; v++) free(y[v]);
}

/* Backward from bf16 x and/or a bf16 y (its mask), FP32 or bf16 dx, against the FP32 op given y
 * widened from the bf16 y (variant 0). */
static void check_bn_backward(st_backend *be, const bn_inputs *in) {
    const size_t n = (size_t)BN_ROWS * BN_C;
    st_bn_desc d = {.rows = BN_ROWS, .c = BN_C, .eps = 1e-5f, .momentum = 0.1f, .relu = 1};
    float mean[BN_C], rstd[BN_C];
    float *y = malloc(n * sizeof *y);
    be->bn_forward_train(be, &d, in->x_wide, in->gamma, in->beta, y, mean, rstd, NULL, NULL);
    uint16_t *y16 = rounded(y, n);
    float *y_wide = widened(y16, n);
    const int variants[5][3] = {{0, 0, 0}, {0, 1, 0}, {0, 1, 1}, {1, 1, 1}, {1, 0, 0}};
    float *dx[5], grads[5][2][BN_C];
    for (int v = 0; v < 5; v++) { /* x_bf16, y_bf16, dx_bf16 */
        d.x_bf16 = variants[v][0];
        d.y_bf16 = variants[v][1];
        d.dx_bf16 = variants[v][2];
        dx[v] = malloc(n * sizeof(float));
        be->bn_backward(be, &d, bn_x(in, d.x_bf16), d.y_bf16 ? (const float *)y16 : y_wide,
                        in->dy, in->gamma, mean, rstd, dx[v], grads[v][0], grads[v][1]);
    }
    uint16_t *want16 = rounded(dx[0], n);
    for (int v = 1; v < 5; v++) {
        char what[120];
        snprintf(what, sizeof what, "bn_backward x_bf16 %d y_bf16 %d dx_bf16 %d: dx",
                 variants[v][0], variants[v][1], variants[v][2]);
        if (variants[v][2]) CHECK_SAME(what, (uint16_t *)dx[v], want16, n);
        else CHECK_SAME(what, dx[v], dx[0], n);
        snprintf(what, sizeof what, "bn_backward x_bf16 %d y_bf16 %d dx_bf16 %d: dgamma, dbeta",
                 variants[v][0], variants[v][1], variants[v][2]);
        CHECK_SAME(what, &grads[v][0][0], &grads[0][0][0], (size_t)2 * BN_C);
    }
    size_t masked = 0;
    for (size_t i = 0; i < n; i++) masked += y16[i] == 0;
    TEST_CHECK(masked > n / 10 && masked < n * 9 / 10, "ReLU masks %zu of %zu: not a real test",
               masked, n);
    for (int v = 0; v < 5; v++) free(dx[v]);
    free(want16);
    free(y);
    free(y16);
    free(y_wide);
}

static void check_bn(st_backend *be) {
    const size_t n = (size_t)BN_ROWS * BN_C;
    float *x = random_floats(n, -2, 3);
    bn_inputs in = {NULL, random_floats(BN_C, 0.5f, 1.5f), random_floats(BN_C, -0.5f, 0.5f),
                    random_floats(n, -1, 1), rounded(x, n)};
    in.x_wide = widened(in.x16, n);
    check_bn_forward(be, &in);
    check_bn_backward(be, &in);
    free(x);
    free(in.x_wide);
    free(in.x16);
    free(in.gamma);
    free(in.beta);
    free(in.dy);
}

/* ---- conv ------------------------------------------------------------------------------- */

typedef struct {
    float *y, *dw, *db, *dx;
} conv_outputs;

/* Forward and conv_backward of plan d on FP32 x, dy, or on their bf16 copies with the flags. */
static conv_outputs run_conv(st_backend *be, st_conv_desc d, int as_bf16, const float *x,
                             const float *dy, const float *hwio, const float *bias) {
    const size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.k;
    d.x_bf16 = d.y_bf16 = d.dy_bf16 = as_bf16;
    st_conv_plan *p = be->conv_plan(be, &d);
    const size_t nw = be->conv_weights_numel(be, p);
    float *w = be->alloc(be, nw * sizeof(float));
    be->conv_weights_import(be, p, hwio, w);
    uint16_t *x16 = rounded(x, nx), *dy16 = rounded(dy, ny);
    const float *x_in = as_bf16 ? (const float *)x16 : x, *dy_in = as_bf16 ? (const float *)dy16 : dy;
    conv_outputs o = {malloc(ny * sizeof(float)), malloc(nw * sizeof(float)),
                      malloc((size_t)d.k * sizeof(float)), malloc(nx * sizeof(float))};
    be->conv_forward(be, p, x_in, w, bias, o.y);
    be->conv_backward(be, p, x_in, dy_in, w, o.dw, o.db, o.dx, NULL);
    be->conv_weights_changed(be, w, 1);
    be->free(be, w);
    free(x16);
    free(dy16);
    return o;
}

static void check_conv_geometry(st_backend *be, st_conv_desc d, const char *name) {
    st_conv_desc_finish(&d);
    const size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.k;
    float *x = random_floats(nx, -1, 1), *dy = random_floats(ny, -1, 1);
    float *hwio = random_floats((size_t)d.r * d.s * d.c * d.k, -0.2f, 0.2f);
    float *bias = random_floats((size_t)d.k, -0.1f, 0.1f);
    conv_outputs plain = run_conv(be, d, 0, x, dy, hwio, bias);
    conv_outputs as16 = run_conv(be, d, 1, x, dy, hwio, bias);
    st_conv_plan *p0 = be->conv_plan(be, &d);
    d.x_bf16 = d.y_bf16 = d.dy_bf16 = 1;
    TEST_CHECK(be->conv_weights_numel(be, be->conv_plan(be, &d)) == be->conv_weights_numel(be, p0),
               "%s: the bf16-operand plan has another kernel layout", name);
    char what[160];
    snprintf(what, sizeof what, "%s: forward from bf16 x to bf16 y", name);
    uint16_t *y16 = rounded(plain.y, ny);
    CHECK_SAME(what, (uint16_t *)as16.y, y16, ny);
    free(y16);
    snprintf(what, sizeof what, "%s: dw from bf16 x and dy", name);
    CHECK_SAME(what, as16.dw, plain.dw, be->conv_weights_numel(be, p0));
    snprintf(what, sizeof what, "%s: dbias from bf16 dy", name);
    CHECK_SAME(what, as16.db, plain.db, (size_t)d.k);
    snprintf(what, sizeof what, "%s: dx from bf16 dy", name);
    CHECK_SAME(what, as16.dx, plain.dx, nx);
    conv_outputs all[2] = {plain, as16};
    for (int i = 0; i < 2; i++) {
        free(all[i].y);
        free(all[i].dw);
        free(all[i].db);
        free(all[i].dx);
    }
    free(x);
    free(dy);
    free(hwio);
    free(bias);
}

static void check_conv(st_backend *be) {
    check_conv_geometry(be,
                        (st_conv_desc){.n = 2, .h = 9, .w = 8, .c = 24, .k = 40, .r = 3, .s = 3,
                                       .stride_h = 2, .stride_w = 2, .pad_top = 0,
                                       .pad_bottom = 1, .pad_left = 0, .pad_right = 1, .bf16 = 1},
                        "3x3 stride 2, asymmetric padding");
    check_conv_geometry(be,
                        (st_conv_desc){.n = 3, .h = 7, .w = 7, .c = 64, .k = 32, .r = 1, .s = 1,
                                       .stride_h = 1, .stride_w = 1, .relu = 1, .bf16 = 1},
                        "1x1 with ReLU");
}

/* ---- model ------------------------------------------------------------------------------ */

static st_model *make_model(st_backend *be, const char *arch, const char *freeze_until,
                            st_precision precision) {
    st_model_config c = {0};
    c.arch = arch;
    c.batch = 2;
    c.height = c.width = 32;
    c.training = 1;
    c.pool = ST_GPOOL_AVG;
    c.bn_momentum = 0.1f;
    c.precision = precision;
    c.freeze_until = freeze_until;
    st_model *m = st_model_create(be, &c, 3);
    ST_CHECK(m, "model %s: %s", arch, st_error_get());
    return m;
}

typedef struct {
    int bn_outs, conv_outs, dxs; /* BN and conv outputs stored as bf16, BNs writing dx as bf16 */
    size_t half_bytes;           /* bytes the kept ones save */
} bf16_plan;

/* A reader takes its input as bf16 exactly when the input is stored so, and only convs and BNs
 * can (adds, pools and the head read FP32). */
static void check_reads(const st_model *m, const st_layer *l) {
    const st_step *s = &l->step;
    for (int k = 0; k < s->n_in; k++) {
        const st_step *src = &m->layers[m->layers[s->in_mat[k]].exec].step;
        int reads = l->kind == ST_LAYER_CONV ? s->conv.x_bf16
                    : l->kind == ST_LAYER_BN ? s->bf16_in
                                             : 0;
        TEST_CHECK(reads == src->bf16_out, "%s: reads bf16 %d, its input is bf16 %d", l->name,
                   reads, src->bf16_out);
    }
}

/* The planned bf16 operands of a model against the rules, counted. */
static bf16_plan check_plan(const st_model *m) {
    bf16_plan plan = {0};
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        const st_step *s = &l->step;
        check_reads(m, l);
        if (l->kind == ST_LAYER_CONV) {
            TEST_CHECK(s->conv.y_bf16 == s->bf16_out, "%s: y_bf16 %d, bf16_out %d", l->name,
                       s->conv.y_bf16, s->bf16_out);
            plan.conv_outs += s->bf16_out;
        }
        TEST_CHECK(!s->bf16_out || s->last != m->freeze_index,
                   "%s: the delimiting layer's map is stored as bf16", l->name);
        if (s->bf16_out && m->layers[s->last].kept) {
            size_t numel = st_numel(m->layers[s->last].out);
            plan.half_bytes += (numel - (numel + 1) / 2) * sizeof(float);
        }
        if (l->kind != ST_LAYER_BN) continue;
        TEST_CHECK(!s->bf16_out || s->relu, "%s: a bf16 BN output without the fused ReLU", l->name);
        const st_layer *conv = &m->layers[m->layers[s->in_mat[0]].exec];
        int want_dx = conv->kind == ST_LAYER_CONV && conv->step.conv.bf16 && conv->step.needs_grad;
        TEST_CHECK(s->bf16_dx == want_dx && conv->step.conv.dy_bf16 == want_dx,
                   "%s: bf16_dx %d (conv's dy_bf16 %d), want %d", l->name, s->bf16_dx,
                   conv->step.conv.dy_bf16, want_dx);
        plan.bn_outs += s->bf16_out;
        plan.dxs += s->bf16_dx;
    }
    return plan;
}

static void check_model(st_backend *be, const char *arch, const char *freeze_until,
                        bf16_plan want) {
    st_model *m16 = make_model(be, arch, freeze_until, ST_PRECISION_BF16);
    st_model *m32 = make_model(be, arch, freeze_until, ST_PRECISION_FP32);
    bf16_plan got = check_plan(m16);
    TEST_CHECK(got.bn_outs == want.bn_outs && got.conv_outs == want.conv_outs &&
                   got.dxs == want.dxs,
               "%s: bf16 BN outputs %d, conv outputs %d, BN dx %d; want %d, %d, %d", arch,
               got.bn_outs, got.conv_outs, got.dxs, want.bn_outs, want.conv_outs, want.dxs);
    /* every take is a multiple of 64 bytes (arena.c), so each halved block may differ by < 64 */
    const size_t slack = 64 * (size_t)(got.bn_outs + got.conv_outs);
    size_t saved = m32->acts_arena.used - m16->acts_arena.used;
    TEST_CHECK(saved + slack >= got.half_bytes && saved <= got.half_bytes + slack,
               "%s: activations arena %zu bytes smaller in bf16, want %zu", arch, saved,
               got.half_bytes);
    bf16_plan plain = check_plan(m32);
    TEST_CHECK(plain.bn_outs + plain.conv_outs + plain.dxs == 0,
               "%s: an FP32 model plans bf16 operands", arch);
    st_model_free(m16);
    st_model_free(m32);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    if (!be->conv_bf16_supported(be)) {
        st_backend_close(be);
        test_skip("oneDNN has no avx512_core_bf16 here: no bf16 convolutions, no bf16 operands");
    }
    check_bn(be);
    check_conv(be);
    check_model(be, "resnet50", NULL, (bf16_plan){.bn_outs = 32, .conv_outs = 53, .dxs = 53});
    check_model(be, "tv_resnet18", "conv3_block1_out",
                (bf16_plan){.bn_outs = 5, .conv_outs = 15, .dxs = 12});
    check_model(be, "resnet50v2", NULL, (bf16_plan){.bn_outs = 48, .conv_outs = 32, .dxs = 32});
    check_model(be, "tv_resnet18", "conv3_block1_1_relu",
                (bf16_plan){.bn_outs = 5, .conv_outs = 15, .dxs = 13});
    st_backend_close(be);
    return test_finish("test_bf16_operands");
}
