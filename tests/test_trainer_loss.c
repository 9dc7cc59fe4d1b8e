/*
 * test_trainer_loss.c: the trainer learns. st_train_run trains a randomly initialised
 * tv_resnet18 (32x32 inputs, frozen up to conv4_block2_out to keep steps cheap)
 * with cross-entropy on a generated dataset of 8 device classes (data/synthetic.h, 12 images
 * each, written into the test directory), batch 16, SGD with momentum, no augmentation, no
 * validation, for 8 epochs of 6 steps (48 steps: 4 s on 2 idle cores, 30-100 s under load).
 *
 * Threshold: an untrained classifier over K = 8 classes starts near ln 8 = 2.08 (checked: the
 * first epoch's mean loss is above 1.5; the random head makes it larger, ~3.4). The mean train
 * loss of the last 3 epochs (an average: single epochs wobble by ~0.1 at this lr) must fall
 * below 0.25 ln 8 = 0.52, i.e. the network fits most of the 96 training images with
 * confidence. Measured: 3.38 in epoch 1, then 0.34 0.27 0.38 in epochs 6-8 (mean 0.33). A wrong
 * gradient sign, a gradient into the wrong tensor, a learning rate never applied or a loader
 * feeding mismatched labels keeps the loss near ln 8. Also checks the run folder files a user
 * opens (metrics.jsonl per epoch, best_weights.h5 loadable, the final checkpoint, curves.png).
 */
#include <math.h>
#include <unistd.h>

#include "trainer_fixture.h"

enum { EPOCHS = 8 };

static const char *CONFIG =
    "model: {arch: tv_resnet18, image_size: 32, pool: avg}\n"
    "data:\n"
    "  train: [{path: loss_data, name: synth}]\n"
    "  val_fraction: 0\n"
    "  batch_size: 16\n"
    "  sampler: shuffle\n"
    "  augment: {random_resized_crop: false, flip: false, color_jitter: 0}\n"
    "  workers: 2\n"
    "loss: {type: cross_entropy}\n"
    "optimizer: {type: sgd, lr: 0.01, momentum: 0.9, weight_decay: 0}\n"
    "schedule: {type: constant}\n"
    "freeze_until: conv4_block2_out\n"
    "epochs: 8\n"
    "seed: 3\n"
    "device: cpu\n"
    "threads: 2\n"
    "early_stopping: {metric: train/loss, goal: minimize, restore_best: false}\n"
    "output: {dir: loss_runs, name: run, keep_last: 1}\n";

int main(void) {
    fixture_dataset("loss_data", 8, 12, 40);
    st_train_config cfg;
    fixture_config("trainer_loss.yaml", CONFIG, &cfg);
    if (system("rm -rf loss_runs") != 0) return 1;

    st_train_options opt = {0};
    opt.run_dir = "loss_runs/run";
    opt.progress = stdout;
    st_train_result res;
    int rc = st_train_run(&cfg, &opt, &res);
    TEST_CHECK(rc == 0, "st_train_run: %s", st_error_get());
    TEST_CHECK(res.epochs_done == EPOCHS, "%d epochs done, want %d", res.epochs_done, EPOCHS);
    TEST_CHECK(res.steps_done == EPOCHS * 6, "%ld steps, want %d (96 images / 16)", res.steps_done, EPOCHS * 6);

    char *lines[64];
    int n = fixture_metric_lines("loss_runs/run", lines, 64);
    TEST_CHECK(n == EPOCHS, "metrics.jsonl has %d lines, want %d", n, EPOCHS);
    if (n == EPOCHS) {
        double first = fixture_line_loss(lines[0]), last = fixture_line_loss(lines[n - 1]);
        double tail = (fixture_line_loss(lines[n - 3]) + fixture_line_loss(lines[n - 2]) + last) / 3;
        printf("train loss: epoch 1 %.4f, epochs %d-%d mean %.4f (ln 8 = %.4f)\n", first, n - 2, n, tail, log(8.0));
        TEST_CHECK(first > 1.5, "first epoch loss %.4f: an untrained 8-way classifier is near ln 8", first);
        TEST_CHECK(tail < 0.25 * log(8.0), "last 3 epochs' loss %.4f not below 0.25 ln 8 = %.4f", tail, 0.25 * log(8.0));
        TEST_CHECK(fabs(last - res.last_train_loss) < 1e-6, "result loss %.6f vs metrics %.6f", res.last_train_loss, last);
    }
    fixture_free_lines(lines, n);

    st_backend *be = st_backend_open("cpu", 2);
    st_model *m = fixture_load_model(be, &cfg, NULL, 8, "loss_runs/run/best_weights.h5");
    TEST_CHECK(m != NULL, "best_weights.h5 does not load into the trained model's layout");
    st_model_free(m);
    st_backend_close(be);
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "loss_runs/run/ckpt-%d.h5", EPOCHS * 6);
    TEST_CHECK(access(ckpt, R_OK) == 0, "no final checkpoint %s", ckpt);
    TEST_CHECK(access("loss_runs/run/curves.png", R_OK) == 0, "no curves.png");
    st_config_free(&cfg);
    return test_finish("test_trainer_loss");
}
