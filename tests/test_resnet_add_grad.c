/*
 * test_resnet_add_grad.c: a BN whose only reader is a residual add takes its upstream gradient
 * through the add (infer/model/plan.c route_add_gradients, step.grad_via_add): the add masks
 * its output gradient by its ReLU in place and the BN's backward reads that buffer, so the
 * add's copy of the masked gradient into the BN's own gradient buffer no longer exists.
 *
 * Checked on the path a training step takes (st_model_forward / st_model_backward on a Keras
 * resnet50 training model, batch 2 at 64x64, random input and logits gradient), with
 * freeze_until = conv5_block3_3_conv so that backward ends at conv5_block3_3_bn and the add's
 * output gradient is still in its buffer afterwards:
 *   - the BN is routed to conv5_block3_add and its output's gradient is the add's (no buffer
 *     of its own);
 *   - that gradient is masked: zero wherever the add's output is 0 (some entries are, and some
 *     of the others are not zero, so the check is not void);
 *   - the BN's dgamma and dbeta equal, bit for bit, bn_backward (no ReLU) on that masked
 *     gradient: the unfused composition (mask, copy, BN) computes the same floats in the same
 *     order (kernels/cpu/batchnorm.c), so any difference is a routing error.
 */
#include <stdlib.h>
#include <string.h>

#include "../infer/model/layer.h"
#include "../kernels/check.h"
#include "test_util.h"

enum { BATCH = 2, SIZE = 64, CLASSES = 10 };

static void upload_random(st_backend *be, float *dst, size_t n) {
    float *host = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) host[i] = (float)(2.0 * test_uniform() - 1.0);
    be->upload(be, dst, host, n * sizeof(float));
    free(host);
}

/* dgamma and dbeta (2 * C, caller frees) of the BN step at bn from upstream gradient g. */
static float *unfused_param_grads(st_model *m, const st_layer *bn, const float *g) {
    st_backend *be = m->backend;
    const st_layer *x = st_step_input(m, bn, 0);
    const st_bn_desc d = {.rows = (long)BATCH * bn->out.h * bn->out.w, .c = bn->out.c,
                          .eps = bn->step.bn_eps, .momentum = 0.1f, .relu = 0};
    float *dx = be->alloc(be, st_numel(x->out) * sizeof(float));
    float *grads = be->alloc(be, 2 * (size_t)d.c * sizeof(float));
    be->bn_backward(be, &d, x->out.data, NULL, g, bn->step.gamma, bn->step.save_mean,
                    bn->step.save_rstd, dx, grads, grads + d.c);
    float *host = malloc(2 * (size_t)d.c * sizeof(float));
    be->download(be, host, grads, 2 * (size_t)d.c * sizeof(float));
    be->free(be, dx);
    be->free(be, grads);
    return host;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* The add's output gradient after backward is masked by its ReLU: zero wherever the add's
 * output is 0, and not zero everywhere else too (else the mask check is void). */
static void check_masked(st_backend *be, const st_layer *add_out) {
    size_t n = st_numel(add_out->out), wrong = 0, masked = 0, passed = 0;
    float *y = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    be->download(be, y, add_out->out.data, n * sizeof(float));
    be->download(be, g, add_out->grad, n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (y[i] > 0.0f) passed += g[i] != 0.0f;
        else wrong += g[i] != 0.0f, masked++;
    }
    TEST_CHECK(wrong == 0 && masked > 0 && passed > 0,
               "conv5_block3_add: gradient not masked by its ReLU (%zu of %zu masked entries "
               "non-zero, %zu entries passed non-zero)", wrong, masked, passed);
    free(y);
    free(g);
}

static void check_routed_bn(st_model *m) {
    st_backend *be = m->backend;
    const st_layer *bn = &m->layers[st_model_layer_index(m, "conv5_block3_3_bn")];
    int add_index = st_model_layer_index(m, "conv5_block3_add");
    const st_layer *add_out = st_step_output(m, &m->layers[add_index]);
    TEST_CHECK(bn->step.grad_via_add == add_index && bn->grad == add_out->grad,
               "conv5_block3_3_bn: routed to %d (expected %d), gradient %p, the add's %p",
               bn->step.grad_via_add, add_index, (void *)bn->grad, (void *)add_out->grad);
    if (bn->step.grad_via_add != add_index) return;
    check_masked(be, add_out);
    size_t c = (size_t)bn->out.c;
    float *want = unfused_param_grads(m, bn, add_out->grad);
    float *got = malloc(2 * c * sizeof(float));
    be->download(be, got, st_model_find_param(m, "conv5_block3_3_bn", "gamma")->grad,
                 c * sizeof(float));
    be->download(be, got + c, st_model_find_param(m, "conv5_block3_3_bn", "beta")->grad,
                 c * sizeof(float));
    TEST_CHECK(same_bits(got, want, 2 * c),
               "conv5_block3_3_bn: dgamma/dbeta differ from bn_backward on the add's masked "
               "gradient (relative error %.3g)", test_rel_error(got, want, 2 * c));
    free(want);
    free(got);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    TEST_CHECK(be != NULL, "cpu backend: %s", st_error_get());
    if (!be) return test_finish("test_resnet_add_grad");
    st_model_config cfg = {.arch = "resnet50", .batch = BATCH, .height = SIZE, .width = SIZE,
                           .training = 1, .pool = ST_GPOOL_AVG, .num_classes = CLASSES,
                           .bn_momentum = 0.1f, .freeze_until = "conv5_block3_3_conv"};
    st_model *m = st_model_create(be, &cfg, 1);
    TEST_CHECK(m != NULL, "resnet50: %s", st_error_get());
    if (m) {
        upload_random(be, m->input.data, st_numel(m->input));
        st_model_forward(m, BATCH, 1);
        upload_random(be, m->d_logits.data, st_numel(m->d_logits));
        st_model_backward(m, BATCH);
        check_routed_bn(m);
        st_model_free(m);
    }
    st_backend_close(be);
    return test_finish("test_resnet_add_grad");
}
