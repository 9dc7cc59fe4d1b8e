/*
 * test_bf16_train.c: `precision: bf16` in training against fp32 (issue 16 item 3).
 *
 *   1. One conv's three passes (forward, backward-data, backward-weights) in a bf16 plan against
 *      an fp32 plan on the same random x, kernel and dy: relative L2 error in (0, 1e-2]. One
 *      bf16 rounding of each factor is 2^-9 relative; sums of 576 products of random sign keep
 *      that (measured 2.2e-3 for each pass), so 1e-2 is a margin of ~5, and a pass computed in
 *      a wrong layout or without FP32 accumulation is off by order 1.
 *   2. A training step of tv_resnet18 (128 px, batch 8, all layers trainable, BN in batch-
 *      statistics mode, residual branches damped as tests/torch_resnet.py does) in bf16 against
 *      fp32 from the same weights, input and upstream gradient. A random network's gradients
 *      amplify any rounding: perturbing ONLY the fp32 input by 2^-9 relative already moves some
 *      gradients by ~10%. So the yardstick is that perturbation, measured here: the RMS over
 *      parameters of bf16's gradient errors must stay within 4x the RMS of the perturbed fp32
 *      run's (measured 2.3x: bf16 rounds at every layer, not only the input, and the conv
 *      outputs the BNs read are stored in bf16; 1.9x when they were FP32), no gradient may be
 *      off by order 1 (relative error <= 0.5; measured worst 0.23), the features within 1e-2
 *      (measured 5.0e-3; 4e-3 with FP32 conv outputs) and bf16 must have run (features differ,
 *      m->config.precision says bf16).
 * Skips (77) where oneDNN has no avx512_core_bf16: the fp32 fallback is test_bf16_cli's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../infer/model/model.h"
#include "../kernels/check.h"
#include "test_util.h"

enum { BATCH = 8, SIZE = 128 };

static const double BF16_ROUNDING = 1.0 / 512; /* 2^-9 */

/* The last BN of every residual branch (gamma of conv<s>_block<b>_2_bn) scaled by 0.1, as
 * tests/torch_resnet.py does and for its reason: a randomly initialised deep ResNet in batch-
 * statistics mode is chaotic, its gradients amplify any rounding with depth (fp32 against fp64
 * already differ by percents), so no lower precision could be compared; damped branches keep
 * the network near identity like a trained one. */
static void damp_residual_branches(st_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        const char *tail = strstr(p->layer, "_2_bn");
        if (!tail || tail[5] || strcmp(p->weight, "gamma")) continue;
        float *h = malloc(p->numel * sizeof *h);
        st_param_download(m, p, p->value, h);
        for (size_t k = 0; k < p->numel; k++) h[k] *= 0.1f;
        st_param_upload(m, p, h, p->value);
        free(h);
    }
}

static st_model *make(st_backend *be, st_precision precision) {
    st_model_config c = {0};
    c.arch = "tv_resnet18";
    c.batch = BATCH;
    c.height = c.width = SIZE;
    c.training = 1;
    c.pool = ST_GPOOL_AVG;
    c.bn_momentum = 0.1f;
    c.precision = precision;
    st_model *m = st_model_create(be, &c, 3);
    ST_CHECK(m, "model: %s", st_error_get());
    damp_residual_branches(m);
    return m;
}

static float *random_floats(size_t n, double scale) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * (2 * test_uniform() - 1));
    return x;
}

/* One training forward and backward with upstream gradient dfeat. */
static void step(st_model *m, const float *input, const float *dfeat) {
    st_backend *be = m->backend;
    be->upload(be, m->input.data, input, st_numel(m->input) * sizeof(float));
    st_model_forward(m, BATCH, 1);
    be->upload(be, m->d_features.data, dfeat, st_numel(m->d_features) * sizeof(float));
    st_model_backward(m, BATCH);
    be->sync(be);
}

/* The parameter's value (which = 0) or gradient (1) in the file layout. */
static float *host_param(st_model *m, const st_param *p, int which) {
    float *h = malloc(p->numel * sizeof *h);
    st_param_download(m, p, which ? p->grad : p->value, h);
    return h;
}

/* RMS over the trainable parameters of the relative L2 error of `other`'s gradients against
 * fp32's; worst: the largest one. */
static double gradient_error_rms(st_model *fp32, st_model *other, double *worst) {
    double sum = 0;
    int count = 0;
    *worst = 0;
    for (int i = 0; i < fp32->n_params; i++) {
        st_param *a = &fp32->params[i], *b = &other->params[i];
        if (!a->grad) continue;
        float *ha = host_param(fp32, a, 1), *hb = host_param(other, b, 1);
        double err = test_rel_error(hb, ha, a->numel);
        sum += err * err;
        count++;
        if (err > *worst) *worst = err;
        free(ha);
        free(hb);
    }
    return sqrt(sum / count);
}

static double features_error(st_model *fp32, st_model *other) {
    st_backend *be = fp32->backend;
    size_t nf = st_numel(fp32->features);
    float *fa = malloc(nf * sizeof *fa), *fb = malloc(nf * sizeof *fb);
    be->download(be, fa, fp32->features.data, nf * sizeof *fa);
    be->download(be, fb, other->features.data, nf * sizeof *fb);
    double err = test_rel_error(fb, fa, nf);
    free(fa);
    free(fb);
    return err;
}

/* One conv's three passes in bf16 against fp32 on the same random x, kernel and dy. */
static void check_conv_passes(st_backend *be) {
    st_conv_desc d = {.n = 4, .h = 14, .w = 14, .c = 64, .k = 96, .r = 3, .s = 3, .stride_h = 1,
                      .stride_w = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
    st_conv_desc_finish(&d);
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.k;
    size_t nw = (size_t)d.r * d.s * d.c * d.k;
    float *x = random_floats(nx, 1.0), *hwio = random_floats(nw, 0.1), *dy = random_floats(ny, 1.0);
    float *out[2][3]; /* [bf16][y, dx, dw (HWIO)] */
    for (int bf = 0; bf < 2; bf++) {
        d.bf16 = bf;
        st_conv_plan *p = be->conv_plan(be, &d);
        size_t nwb = be->conv_weights_numel(be, p);
        float *w = be->alloc(be, nwb * sizeof(float)), *dw = be->alloc(be, nwb * sizeof(float));
        be->conv_weights_import(be, p, hwio, w);
        for (int k = 0; k < 3; k++) out[bf][k] = malloc((k == 0 ? ny : k == 1 ? nx : nw) * sizeof(float));
        be->conv_forward(be, p, x, w, NULL, out[bf][0]);
        be->conv_backward_data(be, p, dy, w, out[bf][1]);
        be->conv_backward_filter(be, p, x, dy, dw, NULL);
        be->conv_weights_export(be, p, dw, out[bf][2]);
        be->free(be, w);
        be->free(be, dw);
    }
    static const char *const names[3] = {"forward y", "backward-data dx", "backward-weights dw"};
    for (int k = 0; k < 3; k++) {
        double err = test_rel_error(out[1][k], out[0][k], k == 0 ? ny : k == 1 ? nx : nw);
        printf("conv %s: relative error %.3g\n", names[k], err);
        /* one bf16 rounding of each factor (2^-9 relative each), sums of 576+ products with
         * random signs: ~2^-9 = 2e-3 relative; 1e-2 leaves a margin of 5 */
        TEST_CHECK(err <= 1e-2 && err > 0, "conv %s: bf16 relative error %.3g (want (0, 1e-2])", names[k], err);
        free(out[0][k]);
        free(out[1][k]);
    }
    free(x);
    free(hwio);
    free(dy);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    if (!be->conv_bf16_supported(be)) {
        st_backend_close(be);
        test_skip("oneDNN has no avx512_core_bf16 here: bf16 runs as fp32 (test_bf16_cli checks that)");
    }
    check_conv_passes(be);
    st_model *fp32 = make(be, ST_PRECISION_FP32), *bf16 = make(be, ST_PRECISION_BF16);
    st_model *nudged = make(be, ST_PRECISION_FP32);
    TEST_CHECK(bf16->config.precision == ST_PRECISION_BF16, "the bf16 model fell back to fp32");
    size_t nin = st_numel(fp32->input);
    float *input = random_floats(nin, 1.0);
    float *dfeat = random_floats(st_numel(fp32->d_features), 1.0 / BATCH);
    step(fp32, input, dfeat);
    step(bf16, input, dfeat);
    for (size_t i = 0; i < nin; i++) input[i] *= (float)(1 + BF16_ROUNDING * (2 * test_uniform() - 1));
    step(nudged, input, dfeat);
    double ferr = features_error(fp32, bf16), worst_bf16, worst_nudged;
    double rms_bf16 = gradient_error_rms(fp32, bf16, &worst_bf16);
    double rms_nudged = gradient_error_rms(fp32, nudged, &worst_nudged);
    printf("features: relative error %.3g; gradients: RMS relative error %.3g (worst %.3g), input "
           "rounding alone %.3g (worst %.3g)\n", ferr, rms_bf16, worst_bf16, rms_nudged, worst_nudged);
    TEST_CHECK(ferr <= 1e-2 && ferr > 0, "features: relative error %.3g (want (0, 1e-2])", ferr);
    TEST_CHECK(rms_bf16 <= 4 * rms_nudged, "gradients: RMS error %.3g > 4 x %.3g (input rounding alone)",
               rms_bf16, rms_nudged);
    TEST_CHECK(worst_bf16 <= 0.5, "a gradient is off by %.3g relative", worst_bf16);
    free(input);
    free(dfeat);
    st_model_free(nudged);
    st_model_free(fp32);
    st_model_free(bf16);
    st_backend_close(be);
    return test_finish("test_bf16_train");
}
