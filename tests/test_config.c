/*
 * test_config.c: train config parsing (train/config.c): a full valid config, every error class
 * with its file:line:column and key path, --set overrides, and the write/re-read round trip.
 * Fixture YAML files are written into the test's working directory (the build tree).
 */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/config.h"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static const char *valid_yaml =
    "# a config using most keys\n"
    "model:\n"
    "  arch: tv_resnet18\n"
    "  weights: weights/r18.h5\n"
    "  image_size: 128\n"
    "  pool: gem\n"
    "  gem_p: 3.5\n"
    "  embed_dim: 64\n"
    "data:\n"
    "  train:\n"
    "    - {path: faces, name: orl}\n"
    "    - /abs/coil.tsv\n"
    "  strategy: single\n"
    "  val_fraction: 0.25\n"
    "  sampler: pk\n"
    "  pk: {p: 6, k: 3}\n"
    "  augment: {random_resized_crop: true, scale: [0.5, 1], flip: false, color_jitter: 0.2}\n"
    "  preprocess: torch\n"
    "loss:\n"
    "  type: triplet\n"
    "  triplet: {mining: batch_hard, margin: soft, normalize: false}\n"
    "optimizer: {type: adamw, lr: 3.0e-4, betas: [0.9, 0.99], weight_decay: 0.05, head_lr_mult: 10}\n"
    "schedule: {type: step, step_size: 5, gamma: 0.5, warmup_epochs: 0.5}\n"
    "freeze_until: conv4_block2_out\n"
    "phases:\n"
    "  - {name: head, epochs: 2, freeze_until: all, optimizer: {lr: 0.01}}\n"
    "  - {name: full, epochs: 6, data: [orl]}\n"
    "seed: 42\n"
    "device: cpu\n"
    "validation: {every: 2, metrics: [hit@1, map@10, map@R]}\n"
    "early_stopping: {metric: val/map@R, goal: maximize, patience: 3}\n"
    "output: {dir: runs, name: r18, keep_last: 1}\n";

static void test_valid(void) {
    char cwd[4096], want[4200];
    TEST_CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    mkdir("cfgdir", 0777);
    write_text("cfgdir/valid.yaml", valid_yaml);
    st_train_config c;
    int rc = st_config_load("cfgdir/valid.yaml", NULL, 0, &c);
    TEST_CHECK(rc == 0, "valid config rejected: %s", st_error_get());
    if (rc) return;
    TEST_CHECK(!strcmp(c.model.arch, "tv_resnet18") && c.model.image_size == 128, "model.arch/image_size");
    snprintf(want, sizeof want, "%s/cfgdir/weights/r18.h5", cwd);
    TEST_CHECK(c.model.weights && !strcmp(c.model.weights, want), "weights resolved against the file: %s, want %s",
               c.model.weights, want);
    TEST_CHECK(c.model.pool == ST_GPOOL_GEM && c.model.gem_p == 3.5 && c.model.embed_dim == 64, "pool/gem/embed");
    TEST_CHECK(c.data.n_train == 2 && !strcmp(c.data.train[0].name, "orl"), "datasets");
    TEST_CHECK(!strcmp(c.data.train[1].path, "/abs/coil.tsv") && !strcmp(c.data.train[1].name, "coil"),
               "dataset shorthand: path %s name %s", c.data.train[1].path, c.data.train[1].name);
    TEST_CHECK(c.data.sampler.p == 6 && c.data.sampler.k == 3 && st_config_batch_size(&c) == 18, "pk and batch size %d",
               st_config_batch_size(&c));
    TEST_CHECK(c.data.crop_scale[0] == 0.5 && c.data.crop_scale[1] == 1.0 && !c.data.flip, "augment");
    TEST_CHECK(c.data.preprocess == ST_PREPROCESS_TORCH, "preprocess");
    TEST_CHECK(c.loss.kind == ST_LOSS_TRIPLET && c.loss.soft_margin && !c.loss.normalize, "loss");
    TEST_CHECK(c.optimizer.kind == ST_OPT_ADAMW && c.optimizer.lr == 3.0e-4 && c.optimizer.beta2 == 0.99,
               "optimizer");
    TEST_CHECK(c.schedule.kind == ST_LR_STEP && c.schedule.gamma == 0.5, "schedule");
    TEST_CHECK(c.n_phases == 2 && c.epochs == 8, "phases %d, epochs %d (sum of phases)", c.n_phases, c.epochs);
    if (c.n_phases == 2) {
        /* phases inherit the top level and override their own keys */
        TEST_CHECK(c.phases[0].optimizer.lr == 0.01 && c.phases[0].optimizer.kind == ST_OPT_ADAMW &&
                       c.phases[0].optimizer.weight_decay == 0.05,
                   "phase 0 optimizer inherits type/decay and overrides lr");
        TEST_CHECK(!strcmp(c.phases[0].freeze_until, "all") && !strcmp(c.phases[1].freeze_until, "conv4_block2_out"),
                   "phase freeze_until");
        TEST_CHECK(c.phases[0].n_data == 2 && c.phases[1].n_data == 1, "phase datasets");
        TEST_CHECK(c.phases[1].optimizer.lr == 3.0e-4, "phase 1 keeps the top-level lr");
    }
    TEST_CHECK(c.seed == 42 && c.device == ST_DEVICE_CPU, "seed/device");
    TEST_CHECK(c.validation.k == 10, "validation.k auto = largest @K: %d", c.validation.k);
    TEST_CHECK(c.early_stopping.patience == 3 && c.early_stopping.maximize, "early stopping");
    TEST_CHECK(!strcmp(c.output.dir, "runs") && c.output.keep_last == 1 && c.output.save_best, "output");
    st_config_free(&c);
}

/* Load text as errN.yaml and expect failure with `want` in the message. */
static void expect_error(const char *name, const char *text, const char *set, const char *want) {
    write_text(name, text);
    st_train_config c;
    const char *sets[1] = {set};
    int rc = st_config_load(name, sets, set ? 1 : 0, &c);
    TEST_CHECK(rc == -1, "%s: accepted, want an error with '%s'", name, want);
    if (rc == 0) {
        st_config_free(&c);
        return;
    }
    TEST_CHECK(strstr(st_error_get(), want) != NULL, "%s: message\n  %s\nlacks\n  %s", name, st_error_get(), want);
}

static const char *base_yaml = "model: {arch: resnet50}\ndata:\n  train: [{path: d, name: d}]\n";

static void test_errors(void) {
    char text[2048];
    /* unknown key, with the section's keys as a hint */
    snprintf(text, sizeof text, "%soptimizer:\n  lr: 0.1\n  lrr: 0.2\n", base_yaml);
    expect_error("err_unknown.yaml", text, NULL, "err_unknown.yaml:6:3: optimizer.lrr: unknown key");
    expect_error("err_unknown.yaml", text, NULL, "HINT: the keys here are: type, lr,");
    /* wrong type */
    snprintf(text, sizeof text, "%soptimizer:\n  lr: fast\n", base_yaml);
    expect_error("err_type.yaml", text, NULL, "err_type.yaml:5:7: optimizer.lr: expected a number, got 'fast'");
    /* out of range */
    snprintf(text, sizeof text, "%soptimizer: {momentum: 1.5}\n", base_yaml);
    expect_error("err_range.yaml", text, NULL,
                 "err_range.yaml:4:23: optimizer.momentum: 1.5 is out of range: must be in [0, 1)");
    snprintf(text, sizeof text, "%smodel: {arch: resnet50, image_size: 16}\n", "data:\n  train: [d]\n");
    expect_error("err_range2.yaml", text, NULL, "err_range2.yaml:3:37: model.image_size: 16 is out of range");
    /* enum */
    snprintf(text, sizeof text, "%sloss:\n  type: arcface\n", base_yaml);
    expect_error("err_enum.yaml", text, NULL,
                 "err_enum.yaml:5:9: loss.type: 'arcface' is not one of: cross_entropy, triplet");
    /* architecture names come from infer/model/arch.c */
    expect_error("err_arch.yaml", "model: {arch: resnet51}\ndata: {train: [d]}\n", NULL,
                 "err_arch.yaml:1:15: model.arch: unknown architecture 'resnet51' (HINT: one of resnet50");
    /* a section that is not a mapping, a bool that is not a bool, a list that is not a list */
    snprintf(text, sizeof text, "%sschedule: cosine\n", base_yaml);
    expect_error("err_section.yaml", text, NULL,
                 "err_section.yaml:4:11: schedule: expected a mapping of keys, got 'cosine'");
    snprintf(text, sizeof text, "%soptimizer: {nesterov: maybe}\n", base_yaml);
    expect_error("err_bool.yaml", text, NULL, "optimizer.nesterov: expected true or false, got 'maybe'");
    snprintf(text, sizeof text, "%svalidation: {metrics: map@10}\n", base_yaml);
    expect_error("err_list.yaml", text, NULL, "err_list.yaml:4:23: validation.metrics: expected a list");
    snprintf(text, sizeof text, "%svalidation: {metrics: [map@10, top5]}\n", base_yaml);
    expect_error("err_metric.yaml", text, NULL, "validation.metrics: 'top5' is not a metric");
    snprintf(text, sizeof text, "%sloss: {triplet: {margin: hard}}\n", base_yaml);
    expect_error("err_margin.yaml", text, NULL, "loss.triplet.margin: expected a number or 'soft', got 'hard'");
    /* malformed YAML: libyaml's problem with file:line */
    expect_error("err_syntax.yaml", "model:\n  arch: resnet50\n image_size: 3\n", NULL, "err_syntax.yaml:3:");
    expect_error("err_syntax.yaml", "model:\n  arch: resnet50\n image_size: 3\n", NULL, "malformed YAML");
    expect_error("err_flow.yaml", "model: {arch: resnet50\n", NULL, "err_flow.yaml:2:1: malformed YAML");
    /* duplicate keys and aliases */
    expect_error("err_dup.yaml", "model: {arch: resnet50}\nmodel: {arch: resnet101}\n", NULL,
                 "err_dup.yaml:2:1: duplicate key 'model'");
    expect_error("err_alias.yaml", "model: &m {arch: resnet50}\nx: *m\n", NULL,
                 "err_alias.yaml:1:8: anchors and aliases");
    /* cross-key rules name the key to change */
    snprintf(text, sizeof text, "%sloss: {type: triplet}\n", base_yaml);
    expect_error("err_rule_sampler.yaml", text, NULL, "data.sampler: loss triplet needs positives in every batch");
    snprintf(text, sizeof text, "%s  sampler: pk\n  batch_size: 30\n", base_yaml);
    expect_error("err_rule_batch.yaml", text, NULL,
                 "err_rule_batch.yaml:5:15: data.batch_size: 30 differs from pk.p * pk.k = 32");
    snprintf(text, sizeof text, "%sphases:\n  - {epochs: 2, data: [coil]}\n", base_yaml);
    expect_error("err_phase.yaml", text, NULL, "phases.0: dataset 'coil' is not in data.train");
    snprintf(text, sizeof text, "%sphases:\n  - {epochs: 2}\nepochs: 5\n", base_yaml);
    expect_error("err_epochs.yaml", text, NULL, "err_epochs.yaml:6:9: epochs: 5 differs from the phases' total 2");
    snprintf(text, sizeof text, "%searly_stopping: {patience: 2, metric: val/hit@5}\n", base_yaml);
    expect_error("err_es.yaml", text, NULL, "early_stopping.metric: 'val/hit@5' is not reported by this config");
    expect_error("err_nodata.yaml", "model: {arch: resnet50}\n", NULL, "data.train: at least one dataset is required");
    expect_error("err_missing.yaml", "", NULL, "data.train");
    st_train_config c;
    TEST_CHECK(st_config_load("no/such/config.yaml", NULL, 0, &c) == -1 &&
                   strstr(st_error_get(), "no/such/config.yaml: cannot open") != NULL,
               "missing file: %s", st_error_get());
}

/* validation.metrics through the registry (infer/metrics.h): the names are kept as written (they
 * key metrics.jsonl), validation.k follows the largest K, map@R takes either case of the R, and
 * eval-only or misspelled names are refused with the documented list. */
static void test_metric_names(void) {
    char text[2048];
    snprintf(text, sizeof text, "%svalidation: {metrics: [recall@20, map@r, map@R, mrr, precision@3, hit@05]}\n"
             "early_stopping: {metric: val/map@r}\n", base_yaml);
    write_text("metric_names.yaml", text);
    st_train_config c;
    int rc = st_config_load("metric_names.yaml", NULL, 0, &c);
    TEST_CHECK(rc == 0, "metric names rejected: %s", st_error_get());
    if (rc == 0) {
        TEST_CHECK(c.validation.n_metrics == 6 && !strcmp(c.validation.metrics[1], "map@r") &&
                       !strcmp(c.validation.metrics[2], "map@R") && !strcmp(c.validation.metrics[5], "hit@05"),
                   "metric names not kept as written");
        TEST_CHECK(c.validation.k == 20, "validation.k %d, want the largest K 20", c.validation.k);
        st_config_free(&c);
    }
    static const char *const refused[] = {"MAP@R", "Hit@1", "MRR", "map", "r-precision", "mean_rank", "hit@0",
                                           "hit@", "recall"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char want[256];
        snprintf(text, sizeof text, "%svalidation: {metrics: [hit@1, '%s']}\n", base_yaml, refused[i]);
        snprintf(want, sizeof want, "validation.metrics: '%s' is not a metric (HINT: hit@K, map@K, precision@K, "
                 "recall@K, map@R, mrr)", refused[i]);
        expect_error("err_metric_name.yaml", text, NULL, want);
    }
}

static void test_set(void) {
    write_text("set_base.yaml", base_yaml);
    const char *sets[] = {
        "optimizer.lr=0.05",      "data.pk.p=8",     "model.pool=gem",           "validation.metrics=[hit@1, map@5]",
        "model={image_size: 96}", "data.sampler=pk", "loss.triplet.margin=soft", "seed=7"};
    st_train_config c;
    int rc = st_config_load("set_base.yaml", sets, 8, &c);
    TEST_CHECK(rc == 0, "--set rejected: %s", st_error_get());
    if (rc == 0) {
        TEST_CHECK(c.optimizer.lr == 0.05, "optimizer.lr %g", c.optimizer.lr);
        TEST_CHECK(c.data.sampler.p == 8 && c.data.sampler.k == 4, "data.pk.p %d k %d", c.data.sampler.p, c.data.sampler.k);
        TEST_CHECK(c.model.pool == ST_GPOOL_GEM, "model.pool");
        TEST_CHECK(c.validation.n_metrics == 2 && !strcmp(c.validation.metrics[1], "map@5") && c.validation.k == 5,
                   "metrics list");
        TEST_CHECK(c.model.image_size == 96 && !strcmp(c.model.arch, "resnet50"), "a mapping merges into the section");
        TEST_CHECK(c.loss.soft_margin && c.seed == 7, "margin soft, seed");
        st_config_free(&c);
    }
    expect_error("set_bad.yaml", base_yaml, "optimizer.lr=abc",
                 "--set optimizer.lr=abc:1:1: optimizer.lr: expected a number, got 'abc'");
    expect_error("set_bad.yaml", base_yaml, "optimizer.lrr=1", "--set optimizer.lrr=1:1:1: optimizer.lrr: unknown key");
    expect_error("set_bad.yaml", base_yaml, "optimizer.lr", "--set 'optimizer.lr': expected key.path=value");
    expect_error("set_bad.yaml", base_yaml, "model.arch.x=1",
                 "--set model.arch.x=1: model.arch.x: 'x' is inside a scalar");
    expect_error("set_bad.yaml", base_yaml, "data.pk.p=1", "data.pk.p: 1 is out of range: must be in [2,");
    expect_error("set_bad.yaml", base_yaml, "model.pool=[avg",
                 "--set model.pool=[avg:2:1: malformed YAML: did not find expected ',' or ']'");
    /* an index into a list */
    write_text("set_phase.yaml", "model: {arch: resnet50}\ndata: {train: [d]}\nphases: [{epochs: 2}, {epochs: 3}]\n");
    const char *phase_set[] = {"phases.1.epochs=7"};
    rc = st_config_load("set_phase.yaml", phase_set, 1, &c);
    TEST_CHECK(rc == 0 && c.n_phases == 2 && c.phases[1].epochs == 7 && c.epochs == 9, "phases.1.epochs=7: %s",
               rc ? st_error_get() : "wrong values");
    if (rc == 0) st_config_free(&c);
}

static int file_bytes(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    return (int)n;
}

static void test_round_trip(void) {
    st_train_config a, b, d;
    write_text("cfgdir/valid.yaml", valid_yaml);
    TEST_CHECK(st_config_load("cfgdir/valid.yaml", NULL, 0, &a) == 0, "load: %s", st_error_get());
    TEST_CHECK(st_config_write_yaml(&a, "roundtrip.yaml") == 0, "write: %s", st_error_get());
    TEST_CHECK(access("roundtrip.yaml.tmp", F_OK) != 0, "the .tmp file is renamed away");
    int rc = st_config_load("roundtrip.yaml", NULL, 0, &b);
    TEST_CHECK(rc == 0, "re-read of the written config: %s", st_error_get());
    if (rc == 0) {
        TEST_CHECK(st_config_equal(&a, &b), "round trip changed the config");
        /* writing the re-read config gives the same bytes */
        static char t1[65536], t2[65536];
        TEST_CHECK(st_config_write_yaml(&b, "roundtrip2.yaml") == 0, "second write");
        TEST_CHECK(file_bytes("roundtrip.yaml", t1, sizeof t1) > 0 &&
                       file_bytes("roundtrip2.yaml", t2, sizeof t2) > 0 && !strcmp(t1, t2),
                   "written files differ");
        b.optimizer.beta2 = 0.5;
        TEST_CHECK(!st_config_equal(&a, &b), "st_config_equal misses a changed beta");
        st_config_free(&b);
    }
    /* defaults round trip too; a string that looks like a number stays a string */
    write_text("rt_min.yaml", "data: {train: [{path: d, name: \"123\"}]}\noutput: {name: \"true\"}\n");
    TEST_CHECK(st_config_load("rt_min.yaml", NULL, 0, &d) == 0, "minimal: %s", st_error_get());
    TEST_CHECK(st_config_write_yaml(&d, "rt_min_out.yaml") == 0, "write minimal");
    rc = st_config_load("rt_min_out.yaml", NULL, 0, &b);
    TEST_CHECK(rc == 0 && st_config_equal(&d, &b) && !strcmp(b.data.train[0].name, "123") &&
                   !strcmp(b.output.name, "true"),
               "minimal round trip: %s", rc ? st_error_get() : "values differ");
    if (rc == 0) st_config_free(&b);
    st_config_free(&d);
    st_config_free(&a);
}

/* Loads text, writes it back and re-reads it; 0 with *out loaded when the round trip is equal. */
static int load_round_trip(const char *name, const char *text, st_train_config *out) {
    write_text(name, text);
    if (st_config_load(name, NULL, 0, out)) return -1;
    st_train_config again;
    int rc = st_config_write_yaml(out, "rt_holdout_out.yaml") || st_config_load("rt_holdout_out.yaml", NULL, 0, &again);
    if (rc == 0) {
        rc = st_config_equal(out, &again) ? 0 : st_error_set("%s: the round trip changed the config", name);
        st_config_free(&again);
    }
    if (rc) st_config_free(out);
    return rc;
}

/* data.val_classes (a share, a list of names, or null) and output.name null (the default: the
 * command names the run by date) are read, checked and written back. */
static void test_val_classes_and_run_name(void) {
    st_train_config c;
    char text[1024];
    snprintf(text, sizeof text, "%s  val_classes: [s1, orl/s2]\n", base_yaml);
    TEST_CHECK(load_round_trip("vc_names.yaml", text, &c) == 0, "names: %s", st_error_get());
    if (c.data.val_classes.n_names == 2) {
        TEST_CHECK(!strcmp(c.data.val_classes.names[1], "orl/s2") && c.data.val_classes.fraction == 0, "names read");
        TEST_CHECK(c.output.name == NULL, "output.name defaults to null");
        st_config_free(&c);
    }
    snprintf(text, sizeof text, "%s  val_classes: 0.25\n  val_fraction: 0\nearly_stopping: {patience: 2}\n", base_yaml);
    TEST_CHECK(load_round_trip("vc_share.yaml", text, &c) == 0, "share: %s", st_error_get());
    if (c.data.val_classes.fraction == 0.25) st_config_free(&c);
    snprintf(text, sizeof text, "%s  val_classes: 1.5\n", base_yaml);
    expect_error("vc_range.yaml", text, NULL, "vc_range.yaml:4:16: data.val_classes: 1.5 is out of range: must be in (0, 1)");
    snprintf(text, sizeof text, "%s  val_classes: []\n", base_yaml);
    expect_error("vc_empty.yaml", text, NULL, "data.val_classes: an empty list holds out nothing");
    snprintf(text, sizeof text, "%s  val_classes: some\n", base_yaml);
    expect_error("vc_word.yaml", text, NULL, "data.val_classes: expected a share of the classes in (0, 1)");
    expect_error("vc_cross.yaml", "data:\n  train: [a, b]\n  strategy: cross\n  val_classes: 0.2\n", NULL,
                 "vc_cross.yaml:4:16: data.val_classes: strategy cross already validates");
    snprintf(text, sizeof text, "%s  val_fraction: 0\nearly_stopping: {patience: 2}\n", base_yaml);
    expect_error("vc_none.yaml", text, NULL, "needs a validation set (HINT: set data.val_fraction > 0, data.val_classes");
}

int main(void) {
    test_valid();
    test_val_classes_and_run_name();
    test_errors();
    test_metric_names();
    test_set();
    test_round_trip();
    return test_finish("test_config");
}
