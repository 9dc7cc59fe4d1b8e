/*
 * test_trainer_freeze.c: freeze_until keeps the frozen part of the network bit-identical.
 *
 * A start file (tv_resnet18, 32x32, 4-way classifier, deterministic init) is written with
 * st_weights_save; st_train_run fine-tunes it with freeze_until: conv4_block2_out for 2 epochs
 * of SGD with momentum and weight decay (decay would move a frozen weight that wrongly got an
 * optimizer slot even with a zero gradient) on generated images. Then, loading the start file,
 * the exported best_weights.h5 and the last checkpoint by name:
 *   - every parameter of the layers up to and including conv4_block2_out (kernels, BN gamma,
 *     beta AND moving statistics: frozen BNs run in inference mode) is bit-identical (memcmp;
 *     no tolerance: nothing may write them at all);
 *   - the trained part moved: every conv kernel after the delimiting layer and the classifier
 *     differ from the start, and so do the moving statistics of the trainable BNs (they are
 *     updated by batch-statistics forwards), so the comparison can fail.
 */
#include <unistd.h>

#include "trainer_fixture.h"

static const char *CONFIG =
    "model: {arch: tv_resnet18, image_size: 32, weights: freeze_start.h5}\n"
    "data:\n"
    "  train: [{path: freeze_data, name: synth}]\n"
    "  val_fraction: 0\n"
    "  batch_size: 8\n"
    "  augment: {random_resized_crop: true, scale: [0.5, 1], flip: true}\n"
    "  workers: 2\n"
    "loss: {type: cross_entropy}\n"
    "optimizer: {type: sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.01, no_decay_bn_bias: false}\n"
    "schedule: {type: constant}\n"
    "freeze_until: conv4_block2_out\n"
    "epochs: 2\n"
    "seed: 5\n"
    "device: cpu\n"
    "threads: 2\n"
    "early_stopping: {metric: train/loss, goal: minimize, restore_best: false}\n"
    "output: {dir: freeze_runs, name: run, keep_last: 1}\n";

/* Compare every parameter of `got` with `start`: identical up to the delimiting layer, changed
 * after it (moving statistics included). */
static void compare(st_model *start, st_model *got, int freeze_index, const char *what) {
    int frozen = 0, moved = 0;
    for (int i = 0; i < start->n_params; i++) {
        st_param *p = &start->params[i];
        st_param *q = st_model_find_param(got, p->layer, p->weight);
        TEST_CHECK(q && q->numel == p->numel, "%s: %s/%s missing", what, p->layer, p->weight);
        if (!q || q->numel != p->numel) continue;
        float *a = fixture_param_host(start, p), *b = fixture_param_host(got, q);
        int same = memcmp(a, b, p->numel * sizeof *a) == 0;
        if (p->layer_index <= freeze_index) {
            TEST_CHECK(same, "%s: frozen %s/%s changed", what, p->layer, p->weight);
            frozen++;
        } else {
            TEST_CHECK(!same, "%s: trainable %s/%s did not change in 2 epochs", what, p->layer, p->weight);
            moved++;
        }
        free(a);
        free(b);
    }
    printf("%s: %d frozen tensors identical, %d trained tensors moved\n", what, frozen, moved);
    TEST_CHECK(frozen > 50 && moved > 10, "%s: %d frozen, %d trained tensors: the split is wrong", what, frozen, moved);
}

int main(void) {
    fixture_dataset("freeze_data", 4, 8, 40);
    if (system("rm -rf freeze_runs") != 0) return 1;
    st_backend *be = st_backend_open("cpu", 2);
    st_model_config mc = {.arch = "tv_resnet18", .batch = 8, .height = 32, .width = 32, .training = 1,
                          .pool = ST_GPOOL_AVG, .num_classes = 4, .bn_momentum = 0.1f};
    st_model *start = st_model_create(be, &mc, 21);
    ST_CHECK(start, "%s", st_error_get());
    ST_CHECK(st_weights_save(start, "freeze_start.h5", NULL) == 0, "%s", st_error_get());

    st_train_config cfg;
    fixture_config("trainer_freeze.yaml", CONFIG, &cfg);
    st_train_options opt = {0};
    opt.run_dir = "freeze_runs/run";
    opt.progress = stdout;
    st_train_result res;
    TEST_CHECK(st_train_run(&cfg, &opt, &res) == 0, "st_train_run: %s", st_error_get());
    TEST_CHECK(res.steps_done == 8, "%ld steps, want 8 (2 epochs of 32 images / 8)", res.steps_done);

    int freeze_index = st_model_layer_index(start, "conv4_block2_out");
    TEST_CHECK(freeze_index > 0, "no layer conv4_block2_out");
    st_model *exported = fixture_load_model(be, &cfg, NULL, 4, "freeze_runs/run/best_weights.h5");
    TEST_CHECK(exported != NULL, "best_weights.h5 does not load");
    if (exported) compare(start, exported, freeze_index, "best_weights.h5");
    st_model *ckpt = fixture_load_model(be, &cfg, NULL, 4, "freeze_runs/run/ckpt-8.h5");
    TEST_CHECK(ckpt != NULL, "ckpt-8.h5 does not load as a weight file");
    if (ckpt) compare(start, ckpt, freeze_index, "ckpt-8.h5");

    st_model_free(ckpt);
    st_model_free(exported);
    st_model_free(start);
    st_backend_close(be);
    st_config_free(&cfg);
    return test_finish("test_trainer_freeze");
}
