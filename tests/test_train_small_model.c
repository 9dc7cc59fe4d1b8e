/*
 * test_train_small_model.c: loss layer + backward + optimizer on a real model (tv_resnet18,
 * 32x32 inputs, batch 8 = P 4 x K 2, backbone frozen up to conv5_block1_out). On one fixed
 * batch, training must drive the loss down: 8 steps of Adam on the triplet loss (soft margin,
 * embedding 16) and of SGD + momentum on cross-entropy (4 classes). Frozen parameters must
 * stay bit-identical and trainable ones must move. Thresholds: on a fixed batch a correct
 * gradient lowers the loss by far more than the 10% asked (measured 60% and 87%); a wrong sign or a
 * gradient written to the wrong tensor leaves it flat or raises it.
 */
#include <stdint.h>

#include "kernels/check.h"
#include "test_util.h"
#include "infer/model/model.h"
#include "train/loss.h"
#include "train/optim.h"

enum { BATCH = 8, SIDE = 32, STEPS = 8 };

static float pixel(int i) { return (float)sin(0.013 * i * i + 0.7 * i); }

static double sum_param(st_model *m, const char *layer, const char *weight) {
    st_param *p = st_model_find_param(m, layer, weight);
    ST_CHECK(p, "no parameter %s/%s", layer, weight);
    float *host = malloc(sizeof(float) * p->numel);
    m->backend->download(m->backend, host, p->value, sizeof(float) * p->numel);
    double s = 0;
    for (size_t i = 0; i < p->numel; i++) s += (double)host[i] * (i + 1);
    free(host);
    return s;
}

static void train_fixed_batch(st_backend *be, const st_loss_config *lc, st_optim_config oc,
                              float lr, int embed_dim, int num_classes, const char *what) {
    st_model_config mc = {.arch = "tv_resnet18", .batch = BATCH, .height = SIDE, .width = SIDE,
                          .training = 1, .freeze_until = "conv5_block1_out",
                          .pool = ST_GPOOL_AVG, .embed_dim = embed_dim,
                          .num_classes = num_classes, .bn_momentum = 0.1f};
    st_model *m = st_model_create(be, &mc, 7);
    TEST_CHECK(m != NULL, "%s: st_model_create: %s", what, st_error_get());
    if (!m) return;
    float *images = malloc(sizeof(float) * BATCH * SIDE * SIDE * 3);
    for (int i = 0; i < BATCH * SIDE * SIDE * 3; i++) images[i] = pixel(i);
    be->upload(be, m->input.data, images, sizeof(float) * BATCH * SIDE * SIDE * 3);
    const int32_t labels[BATCH] = {0, 1, 2, 3, 0, 1, 2, 3};
    st_loss *loss = st_loss_create(m, lc);
    st_optimizer *opt = st_optimizer_create(m, &oc);
    TEST_CHECK(loss && opt, "%s: loss/optimizer create: %s", what, st_error_get());
    const double frozen_before = sum_param(m, "conv1_conv", "kernel");
    const double trained_before = sum_param(m, "conv5_block2_2_conv", "kernel");
    float first = 0, last = 0;
    for (int t = 0; t < STEPS; t++) {
        st_model_forward(m, BATCH, 1);
        st_loss_stats s = st_loss_compute(loss, BATCH, labels);
        TEST_CHECK(isfinite(s.loss), "%s step %d: loss %g", what, t, s.loss);
        if (t == 0) first = s.loss;
        last = s.loss;
        st_model_backward(m, BATCH);
        st_optimizer_step(opt, lr);
        double norm = st_optimizer_stats(opt).norm;
        TEST_CHECK(isfinite(norm) && norm > 0, "%s step %d: gradient norm %g", what, t, norm);
    }
    printf("%s: loss %.5f -> %.5f over %d steps\n", what, first, last, STEPS);
    TEST_CHECK(last < 0.9f * first, "%s: loss %g -> %g, expected a drop of >= 10%%", what, first,
               last);
    TEST_CHECK(sum_param(m, "conv1_conv", "kernel") == frozen_before,
               "%s: a frozen kernel changed", what);
    TEST_CHECK(sum_param(m, "conv5_block2_2_conv", "kernel") != trained_before,
               "%s: a trainable kernel did not move", what);
    st_optimizer_free(opt);
    st_loss_free(loss);
    st_model_free(m);
    free(images);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    st_loss_config triplet = {.kind = ST_LOSS_TRIPLET, .soft_margin = 1};
    st_optim_config adam = st_optim_config_default(ST_OPT_ADAM);
    adam.head_lr_mult = 10.0f;
    train_fixed_batch(be, &triplet, adam, 1e-3f, 16, 0, "triplet + Adam");
    st_loss_config xent = {.kind = ST_LOSS_XENT, .label_smoothing = 0.1f};
    st_optim_config sgd = st_optim_config_default(ST_OPT_SGD);
    sgd.momentum = 0.9f;
    sgd.weight_decay = 1e-4f;
    sgd.decay_norm_and_bias = 0;
    sgd.clip_norm = 10.0f;
    train_fixed_batch(be, &xent, sgd, 0.005f, 0, 4, "cross-entropy + SGD");
    st_backend_close(be);
    return test_finish("test_train_small_model");
}
