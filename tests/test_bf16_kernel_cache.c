/*
 * test_bf16_kernel_cache.c: the CPU keeps one bf16 copy of each conv kernel and reuses it
 * across passes and steps (kernels/cpu/conv.c, kernel16), so a stale copy would silently train
 * on old weights. Through the model API as the trainer drives it:
 *
 *   1. bf16 model A (tv_resnet18, 64 px, batch 4, all layers trainable) runs two training steps:
 *      forward, backward, then an in-place SGD update of every trainable parameter with
 *      be->axpy, as an optimizer writes (nothing tells the backend but st_model_backward).
 *   2. A fresh bf16 model B gets A's parameters (st_param_upload, st_model_weights_changed).
 *      A's and B's inference forwards on the same input must agree BIT FOR BIT: same weights,
 *      same plans, same rounding, so any difference is A reading a stale bf16 kernel.
 *   3. The updates must have moved A's features (else step 2 proves nothing), and a direct
 *      write into one kernel of A (be->scale, announced by st_model_weights_changed) must reach
 *      the next forward: the same write on B, B's forward, bit-for-bit again.
 * Skips (77) where oneDNN has no avx512_core_bf16 (then nothing is cached).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../infer/model/model.h"
#include "../kernels/check.h"
#include "test_util.h"

enum { BATCH = 4, SIZE = 64 };

static st_model *make(st_backend *be) {
    st_model_config c = {0};
    c.arch = "tv_resnet18";
    c.batch = BATCH;
    c.height = c.width = SIZE;
    c.training = 1;
    c.pool = ST_GPOOL_AVG;
    c.bn_momentum = 0.1f;
    c.precision = ST_PRECISION_BF16;
    st_model *m = st_model_create(be, &c, 5);
    ST_CHECK(m, "model: %s", st_error_get());
    return m;
}

/* Features (host, caller frees) of an inference-mode forward on input. */
static float *features(st_model *m, const float *input) {
    st_backend *be = m->backend;
    be->upload(be, m->input.data, input, st_numel(m->input) * sizeof(float));
    st_model_forward(m, BATCH, 0);
    size_t nf = st_numel(m->features);
    float *f = malloc(nf * sizeof *f);
    be->download(be, f, m->features.data, nf * sizeof *f);
    return f;
}

/* A training step: forward, backward with upstream gradient dfeat, w -= 0.05 * dw in place. */
static void sgd_step(st_model *m, const float *input, const float *dfeat) {
    st_backend *be = m->backend;
    be->upload(be, m->input.data, input, st_numel(m->input) * sizeof(float));
    st_model_forward(m, BATCH, 1);
    be->upload(be, m->d_features.data, dfeat, st_numel(m->d_features) * sizeof(float));
    st_model_backward(m, BATCH);
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (p->grad) be->axpy(be, p->value, -0.05f, p->grad, st_param_storage_numel(m, p));
    }
    be->sync(be);
}

/* B's parameters := A's, through the host (file layout), as a weight load does. */
static void copy_params(st_model *a, st_model *b) {
    for (int i = 0; i < a->n_params; i++) {
        float *h = malloc(a->params[i].numel * sizeof *h);
        st_param_download(a, &a->params[i], a->params[i].value, h);
        st_param_upload(b, &b->params[i], h, b->params[i].value);
        free(h);
    }
    st_model_weights_changed(b);
}

static int same_bits(const float *x, const float *y, size_t n) {
    return memcmp(x, y, n * sizeof *x) == 0;
}

/* Scale the kernel of layer `name` by alpha in place (backend layout) and announce it. */
static void scale_kernel(st_model *m, const char *name, float alpha) {
    st_param *p = st_model_find_param(m, name, "kernel");
    ST_CHECK(p, "no kernel for %s", name);
    m->backend->scale(m->backend, p->value, alpha, st_param_storage_numel(m, p));
    st_model_weights_changed(m);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    if (!be->conv_bf16_supported(be)) {
        st_backend_close(be);
        test_skip("oneDNN has no avx512_core_bf16 here: no bf16 kernels are cached");
    }
    st_model *a = make(be);
    size_t nin = st_numel(a->input), nf = st_numel(a->features);
    float *input = malloc(nin * sizeof *input), *dfeat = malloc(st_numel(a->d_features) * sizeof *dfeat);
    for (size_t i = 0; i < nin; i++) input[i] = (float)(2 * test_uniform() - 1);
    for (size_t i = 0; i < st_numel(a->d_features); i++) dfeat[i] = (float)(2 * test_uniform() - 1);

    float *before = features(a, input); /* rounds and caches every kernel */
    sgd_step(a, input, dfeat);
    sgd_step(a, input, dfeat);
    float *fa = features(a, input);
    TEST_CHECK(!same_bits(before, fa, nf), "two SGD steps left the features unchanged: the test "
                                            "would not see a stale kernel");
    st_model *b = make(be);
    copy_params(a, b);
    float *fb = features(b, input);
    TEST_CHECK(same_bits(fa, fb, nf), "after two steps the trained model's features differ from a "
                                      "fresh copy's: a stale bf16 kernel was read");

    scale_kernel(a, "conv1_conv", 0.5f);
    scale_kernel(b, "conv1_conv", 0.5f);
    float *fa2 = features(a, input), *fb2 = features(b, input);
    TEST_CHECK(!same_bits(fa, fa2, nf), "halving conv1's kernel left the features unchanged");
    TEST_CHECK(same_bits(fa2, fb2, nf), "a kernel written directly was not re-rounded");

    free(before);
    free(fa);
    free(fb);
    free(fa2);
    free(fb2);
    free(input);
    free(dfeat);
    st_model_free(a);
    st_model_free(b);
    st_backend_close(be);
    return test_finish("test_bf16_kernel_cache");
}
