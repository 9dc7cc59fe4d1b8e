/*
 * trainer_fixture.h: helpers shared by the trainer tests (tests/test_trainer_*.c), static
 * functions only.
 *
 *   fixture_dataset(root, classes, per_class, side)  a generated device dataset (data/synthetic.h)
 *                                                    written once into the test's directory
 *   fixture_config(path, yaml, cfg)                  write a YAML train config and load it
 *   fixture_metric_lines(run_dir, lines, max)        metrics.jsonl lines without the timing fields
 *   fixture_load_model(path, freeze, cfg)            a model (training layout of cfg) with the
 *                                                    weights of an HDF5 file
 *   fixture_param_host(m, p)                         a parameter's values on the host (caller frees)
 * Ownership: strings returned are malloc'ed; the caller frees them (fixture_free_lines).
 */
#ifndef ST_TRAINER_FIXTURE_H
#define ST_TRAINER_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/synthetic.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"
#include "test_util.h"
#include "train/config.h"
#include "train/trainer.h"

/* root/device_<id>/<i>.png: `classes` device classes of `per_class` images of side x side. The
 * generator is deterministic, so an existing folder from an earlier run is the same data. */
static inline void fixture_dataset(const char *root, int classes, int per_class, int side) {
    struct stat st;
    if (stat(root, &st) == 0) return;
    st_synth_config sc = {0};
    sc.n_classes = classes;
    sc.images_per_class = per_class;
    sc.width = sc.height = side;
    sc.jpeg_fraction = 0.0;
    sc.seed = 11;
    ST_CHECK(st_synth_write_dataset(root, &sc, NULL) == 0, "%s", st_error_get());
}

static inline void fixture_config(const char *path, const char *yaml, st_train_config *cfg) {
    FILE *f = fopen(path, "w");
    ST_CHECK(f, "cannot write %s", path);
    fputs(yaml, f);
    fclose(f);
    ST_CHECK(st_config_load(path, NULL, 0, cfg) == 0, "%s", st_error_get());
}

/* Remove `"key": value` (a number) from a JSON line in place. */
static inline void fixture_drop_field(char *line, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, ", \"%s\": ", key);
    char *at = strstr(line, pattern);
    if (!at) return;
    char *end = at + strlen(pattern);
    while (*end && *end != ',' && *end != '}') end++;
    memmove(at, end, strlen(end) + 1);
}

/* The lines of run_dir/metrics.jsonl with seconds and images_per_second removed (wall time is
 * the only thing allowed to differ between two runs). Returns the line count. */
static inline int fixture_metric_lines(const char *run_dir, char **lines, int max) {
    char path[1024], buf[8192];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (n < max && fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = 0;
        fixture_drop_field(buf, "seconds");
        fixture_drop_field(buf, "images_per_second");
        lines[n++] = strdup(buf);
    }
    fclose(f);
    return n;
}

static inline void fixture_free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
}

/* "train/loss" of a metrics line (NaN when absent). */
static inline double fixture_line_loss(const char *line) {
    const char *at = strstr(line, "\"train/loss\": ");
    return at ? strtod(at + strlen("\"train/loss\": "), NULL) : NAN;
}

/* A model laid out as the trainer builds it for cfg (batch, head, freeze_until) with the weights
 * of path loaded; NULL with the error printed. */
static inline st_model *fixture_load_model(st_backend *be, const st_train_config *cfg, const char *freeze,
                                    int num_classes, const char *path) {
    st_model_config mc = {0};
    mc.arch = cfg->model.arch;
    mc.batch = st_config_batch_size(cfg);
    mc.height = mc.width = cfg->model.image_size;
    mc.training = 1;
    mc.freeze_until = freeze;
    mc.pool = cfg->model.pool;
    mc.gem_p = (float)cfg->model.gem_p;
    mc.embed_dim = cfg->model.embed_dim;
    mc.num_classes = num_classes;
    mc.bn_momentum = (float)cfg->model.bn_momentum;
    st_model *m = st_model_create(be, &mc, 12345);
    if (!m) {
        fprintf(stderr, "st_model_create: %s\n", st_error_get());
        return NULL;
    }
    if (path && st_weights_load(m, path, NULL)) {
        fprintf(stderr, "%s: %s\n", path, st_error_get());
        st_model_free(m);
        return NULL;
    }
    return m;
}

static inline float *fixture_param_host(st_model *m, const st_param *p) {
    float *host = malloc(p->numel * sizeof *host);
    ST_CHECK(host, "out of memory");
    m->backend->download(m->backend, host, p->value, p->numel * sizeof *host);
    return host;
}

#endif
