/*
 * test_trainer_resume.c: the checkpoint acceptance test: a resumed run is bit-identical to a
 * straight one.
 *
 * Config: tv_resnet18 32x32 frozen up to conv4_block2_out, GeM pooling, embedding 16, batch-hard
 * triplet loss on a PK sampler (P 3 x K 2), random resized crops + flips + colour jitter (the
 * augmentation RNG must continue too), Adam (two state tensors per slot) with a cosine
 * schedule, validation every epoch (val/hit@1, val/map@10 in every metrics line), on 6
 * generated device classes (36 train / 12 validation images). 2 epochs of 6 steps.
 *   A: 2 epochs straight.
 *   B: epochs_target 1, then resume (st_train_options.resume) to 2: the epoch-end checkpoint
 *      (with a stray metrics line of a killed epoch 2 that the resume must drop).
 *   C: interrupted in the middle of epoch 2, then resumed: the mid-epoch checkpoint. The
 *      interrupt is deterministic: the progress stream is a stdio cookie stream that raises
 *      SIGINT in this thread when the trainer reports "epoch 2 step 2/", i.e. right after step 2
 *      of epoch 2; the trainer's handler then finishes that step and saves.
 *   D: a two-phase config (head only, then conv5 + head; plateau schedule, restore_best on)
 *      interrupted in the first epoch of phase 2 and resumed.
 * Required, with no tolerance (same code, same data, same order -> same bits):
 *   - metrics.jsonl of B and C equal to A line by line (D: to its own straight run) (train/loss, lr, val metrics ...), wall
 *     time fields removed;
 *   - every parameter of best_weights.h5 (the final weights: restore_best is off) and of the
 *     final checkpoint bit-identical to A's;
 *   - B's checkpoints carry the config the trainer holds in memory, not config.yaml's text on
 *     disk (edited between the two parts).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "trainer_fixture.h"

static const char *CONFIG =
    "model: {arch: tv_resnet18, image_size: 32, pool: gem, gem_p: 3, embed_dim: 16}\n"
    "data:\n"
    "  train: [{path: resume_data, name: synth}]\n"
    "  val_fraction: 0.25\n"
    "  sampler: pk\n"
    "  pk: {p: 3, k: 2}\n"
    "  augment: {random_resized_crop: true, scale: [0.5, 1], flip: true, color_jitter: 0.2}\n"
    "  workers: 2\n"
    "loss: {type: triplet, triplet: {mining: batch_hard, margin: 0.2}}\n"
    "optimizer: {type: adam, lr: 0.001, head_lr_mult: 10}\n"
    "schedule: {type: cosine, min_lr: 0.0001}\n"
    "freeze_until: conv4_block2_out\n"
    "epochs: 2\n"
    "seed: 9\n"
    "device: cpu\n"
    "threads: 2\n"
    "validation: {every: 1, metrics: [hit@1, map@10]}\n"
    "early_stopping: {metric: val/map@10, goal: maximize, restore_best: false}\n"
    "output: {dir: resume_runs, name: run, keep_last: 0}\n";

static const char *PHASES_CONFIG =
    "model: {arch: tv_resnet18, image_size: 32, embed_dim: 16}\n"
    "data:\n"
    "  train: [{path: resume_data, name: synth}]\n"
    "  val_fraction: 0.25\n"
    "  sampler: pk\n"
    "  pk: {p: 3, k: 2}\n"
    "  workers: 2\n"
    "loss: {type: triplet}\n"
    "optimizer: {type: adam, lr: 0.001}\n"
    "schedule: {type: plateau, patience: 1}\n"
    "phases:\n"
    "  - {name: head, epochs: 1, freeze_until: all}\n"
    "  - {name: full, epochs: 2, freeze_until: conv4_block2_out, optimizer: {lr: 0.0003}}\n"
    "seed: 1\n"
    "device: cpu\n"
    "threads: 2\n"
    "output: {dir: resume_runs, keep_last: 2}\n";

/* ---- a progress stream that interrupts the run at a given line ---------------------------- */

static const char *interrupt_at; /* substring of a progress write that triggers SIGINT */
static int interrupts_raised;

static ssize_t interrupting_write(void *cookie, const char *buf, size_t size) {
    (void)cookie;
    fwrite(buf, 1, size, stdout);
    char text[512];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, buf, n);
    text[n] = 0;
    if (interrupt_at && strstr(text, interrupt_at)) {
        interrupt_at = NULL;
        interrupts_raised++;
        raise(SIGINT); /* delivered to this thread before raise returns: deterministic */
    }
    return (ssize_t)size;
}

static int train(const st_train_config *cfg, const char *dir, int resume, int target, FILE *progress,
                 st_train_result *res) {
    st_train_options opt = {0};
    opt.run_dir = dir;
    opt.resume = resume;
    opt.epochs_target = target;
    opt.progress = progress;
    int rc = st_train_run(cfg, &opt, res);
    TEST_CHECK(rc == 0, "%s (resume %d, target %d): %s", dir, resume, target, st_error_get());
    return rc;
}

static void compare_metrics(const char *ref_dir, const char *dir, int epochs) {
    char *ref[16], *got[16];
    int n_ref = fixture_metric_lines(ref_dir, ref, 16), n_got = fixture_metric_lines(dir, got, 16);
    TEST_CHECK(n_ref == epochs && n_got == n_ref, "%s: %d metrics lines, %s: %d (want %d)", ref_dir, n_ref, dir, n_got,
               epochs);
    for (int i = 0; i < n_ref && i < n_got; i++)
        TEST_CHECK(strcmp(ref[i], got[i]) == 0, "epoch %d metrics differ:\n  %s: %s\n  %s: %s", i + 1, ref_dir, ref[i], dir,
                   got[i]);
    if (n_ref > 0) printf("%s last line: %s\n", ref_dir, ref[n_ref - 1]);
    fixture_free_lines(ref, n_ref);
    fixture_free_lines(got, n_got);
}

/* The config a checkpoint carries is the run's config as the trainer holds it in memory. */
static void check_checkpoint_config(st_backend *be, const st_train_config *cfg, const char *path) {
    st_model *m = fixture_load_model(be, cfg, NULL, 0, NULL);
    char *want = st_config_yaml_text(cfg);
    st_checkpoint ck;
    int rc = m ? st_checkpoint_load(&ck, m, path) : -1;
    TEST_CHECK(rc == 0 && want && ck.config_yaml && !strcmp(ck.config_yaml, want),
               "%s: config_yaml is not the run's config in memory (%s)", path, rc ? st_error_get() : "differs");
    if (rc == 0) st_checkpoint_free(&ck);
    free(want);
    st_model_free(m);
}

static void compare_weights(st_backend *be, const st_train_config *cfg, const char *ref_file, const char *file) {
    st_model *a = fixture_load_model(be, cfg, NULL, 0, ref_file);
    st_model *b = fixture_load_model(be, cfg, NULL, 0, file);
    TEST_CHECK(a && b, "cannot load %s or %s", ref_file, file);
    if (a && b) {
        int differ = 0;
        for (int i = 0; i < a->n_params; i++) {
            float *x = fixture_param_host(a, &a->params[i]), *y = fixture_param_host(b, &b->params[i]);
            if (memcmp(x, y, a->params[i].numel * sizeof *x) != 0) {
                if (differ++ < 5) fprintf(stderr, "  %s/%s differs\n", a->params[i].layer, a->params[i].weight);
            }
            free(x);
            free(y);
        }
        TEST_CHECK(differ == 0, "%s vs %s: %d of %d tensors differ", file, ref_file, differ, a->n_params);
    }
    st_model_free(a);
    st_model_free(b);
}

int main(void) {
    fixture_dataset("resume_data", 6, 8, 40);
    if (system("rm -rf resume_runs") != 0) return 1;
    st_train_config cfg;
    fixture_config("trainer_resume.yaml", CONFIG, &cfg);
    st_train_result res;

    /* A: straight. 6 classes x 6 train images; PK 3x2 batches of 6 -> 6 steps an epoch. */
    if (train(&cfg, "resume_runs/straight", 0, 0, stdout, &res)) return test_finish("test_trainer_resume");
    long steps = res.steps_done;
    TEST_CHECK(res.epochs_done == 2 && steps > 2, "straight: %d epochs, %ld steps", res.epochs_done, steps);

    /* B: one epoch, then resume to the config's 2. Before resuming, a stray epoch-2 line is
     * appended to metrics.jsonl, as a kill between an epoch's metrics line and its checkpoint
     * leaves it: the resumed run must drop it, not log epoch 2 twice. */
    train(&cfg, "resume_runs/epoch_end", 0, 1, stdout, &res);
    TEST_CHECK(res.epochs_done == 1 && !res.interrupted, "epoch_end part 1: %d epochs", res.epochs_done);
    FILE *log = fopen("resume_runs/epoch_end/metrics.jsonl", "a");
    ST_CHECK(log, "cannot append to resume_runs/epoch_end/metrics.jsonl");
    fputs("{\"epoch\": 2, \"phase\": \"main\", \"step\": 7, \"train/loss\": 1}\n", log);
    fclose(log);
    FILE *yaml = fopen("resume_runs/epoch_end/config.yaml", "a"); /* checkpoints must not copy it */
    ST_CHECK(yaml, "cannot append to resume_runs/epoch_end/config.yaml");
    fputs("# edited on disk between the two parts\n", yaml);
    fclose(yaml);
    train(&cfg, "resume_runs/epoch_end", 1, 0, stdout, &res);
    TEST_CHECK(res.epochs_done == 2 && res.steps_done == steps, "epoch_end: %d epochs %ld steps", res.epochs_done,
               res.steps_done);

    /* C: SIGINT after step 2 of epoch 2, then resume. */
    cookie_io_functions_t io = {.write = interrupting_write};
    FILE *progress = fopencookie(NULL, "w", io);
    ST_CHECK(progress, "fopencookie failed");
    interrupt_at = "epoch 2 step 2/";
    train(&cfg, "resume_runs/mid_epoch", 0, 0, progress, &res);
    fclose(progress);
    TEST_CHECK(interrupts_raised == 1, "the progress line 'epoch 2 step 2/' never came");
    TEST_CHECK(res.interrupted && res.epochs_done == 1, "mid_epoch part 1: interrupted %d, %d epochs", res.interrupted,
               res.epochs_done);
    TEST_CHECK(res.steps_done == steps / 2 + 2, "mid_epoch part 1: %ld steps, want %ld", res.steps_done, steps / 2 + 2);
    train(&cfg, "resume_runs/mid_epoch", 1, 0, stdout, &res);
    TEST_CHECK(res.epochs_done == 2 && res.steps_done == steps && !res.interrupted, "mid_epoch: %d epochs %ld steps",
               res.epochs_done, res.steps_done);

    compare_metrics("resume_runs/straight", "resume_runs/epoch_end", 2);
    compare_metrics("resume_runs/straight", "resume_runs/mid_epoch", 2);
    st_backend *be = st_backend_open("cpu", 2);
    char ref[128], got[128];
    snprintf(ref, sizeof ref, "resume_runs/straight/ckpt-%ld.h5", steps);
    const char *runs[2] = {"resume_runs/epoch_end", "resume_runs/mid_epoch"};
    snprintf(got, sizeof got, "resume_runs/epoch_end/ckpt-%ld.h5", steps);
    check_checkpoint_config(be, &cfg, got);
    for (int i = 0; i < 2; i++) {
        snprintf(got, sizeof got, "%s/best_weights.h5", runs[i]);
        compare_weights(be, &cfg, "resume_runs/straight/best_weights.h5", got);
        snprintf(got, sizeof got, "%s/ckpt-%ld.h5", runs[i], steps);
        compare_weights(be, &cfg, ref, got);
    }

    /* D: two phases (head only, then conv5 + head with another lr), plateau schedule,
     * restore_best on: interrupted in the first epoch of phase 2, resumed (the model must be
     * rebuilt with phase 2's freezing before loading). */
    st_train_config phased;
    fixture_config("trainer_resume_phases.yaml", PHASES_CONFIG, &phased);
    train(&phased, "resume_runs/phases_straight", 0, 0, stdout, &res);
    progress = fopencookie(NULL, "w", io);
    ST_CHECK(progress, "fopencookie failed");
    interrupt_at = "epoch 2 step 2/";
    train(&phased, "resume_runs/phases_interrupted", 0, 0, progress, &res);
    fclose(progress);
    TEST_CHECK(interrupts_raised == 2 && res.interrupted, "phases: the run was not interrupted in epoch 2");
    train(&phased, "resume_runs/phases_interrupted", 1, 0, stdout, &res);
    TEST_CHECK(res.epochs_done == 3 && !res.interrupted, "phases: %d epochs after resume", res.epochs_done);
    compare_metrics("resume_runs/phases_straight", "resume_runs/phases_interrupted", 3);
    compare_weights(be, &phased, "resume_runs/phases_straight/best_weights.h5",
                    "resume_runs/phases_interrupted/best_weights.h5");

    st_backend_close(be);
    st_config_free(&phased);
    st_config_free(&cfg);
    return test_finish("test_trainer_resume");
}
