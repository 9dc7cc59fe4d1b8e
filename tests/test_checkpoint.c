/*
 * test_checkpoint.c: train/checkpoint.c save -> load is bit-exact (parameters incl. BN moving
 * statistics and the head, optimizer blobs, RNG words, data order, step, epoch, config), the
 * run folder keeps the last N plus best.h5, and damaged files fail with a message naming the file
 * and the broken item: truncated, corrupt parameter bytes, corrupt state bytes, another model
 * configuration, a weight file that is not a checkpoint. A non-finite optimizer blob or BN moving
 * variance is refused as diverged with no file left; the resume loader falls back past a corrupt
 * newest checkpoint with a warning. Needs no fixtures.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/h5util.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"
#include "test_util.h"
#include "train/checkpoint.h"

static st_model *make_model(st_backend *be, int num_classes, uint64_t seed) {
    st_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = "tv_resnet18";
    cfg.batch = 1;
    cfg.height = cfg.width = 32;
    cfg.pool = ST_GPOOL_AVG;
    cfg.embed_dim = 8;
    cfg.num_classes = num_classes;
    cfg.bn_momentum = 0.1f;
    st_model *m = st_model_create(be, &cfg, seed);
    ST_CHECK(m, "st_model_create: %s", st_error_get());
    return m;
}

static float *download_params(st_model *m, size_t *total) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].numel;
    float *all = ST_MALLOC(n * sizeof *all), *at = all;
    for (int i = 0; i < m->n_params; i++) {
        st_param_download(m, &m->params[i], m->params[i].value, at);
        at += m->params[i].numel;
    }
    *total = n;
    return all;
}

/* Make BN moving statistics differ from their initial values, as after training. */
static void perturb_moving_stats(st_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (strncmp(p->weight, "moving_", 7) == 0) m->backend->fill(m->backend, p->value, 0.25f + 0.001f * (float)i, p->numel);
    }
}

static void fill_state(st_checkpoint *ck, long long step, float *m_state, size_t n) {
    static const uint64_t rng[4] = {0x0123456789abcdefULL, 42, 0xffffffffffffffffULL, 7};
    int32_t order[100];
    for (int i = 0; i < 100; i++) order[i] = (i * 37) % 100;
    ck->step = step;
    ck->epoch = step / 10;
    st_checkpoint_set_config(ck, "model:\n  arch: tv_resnet18\noptim:\n  lr: 0.01\n");
    st_checkpoint_add_tensor(ck, "optimizer/m", m_state, n);
    st_checkpoint_add_tensor(ck, "optimizer/v", m_state, n / 2);
    st_checkpoint_add_u64(ck, "rng/sampler", rng, 4);
    st_checkpoint_add_i32(ck, "data/order", order, 100);
    st_checkpoint_add_i32(ck, "data/empty", NULL, 0);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void copy_file(const char *from, const char *to, long keep_bytes) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ST_CHECK(in && out, "copy %s -> %s", from, to);
    char buf[1 << 16];
    long left = keep_bytes;
    size_t got;
    while (left != 0 && (got = fread(buf, 1, sizeof buf, in)) > 0) {
        if (left > 0 && (long)got > left) got = (size_t)left;
        fwrite(buf, 1, got, out);
        if (left > 0) left -= (long)got;
    }
    fclose(in);
    fclose(out);
}

static void overwrite_bytes(const char *path, long offset, int count) {
    FILE *f = fopen(path, "r+b");
    ST_CHECK(f, "open %s", path);
    fseek(f, offset, SEEK_SET);
    for (int i = 0; i < count; i++) fputc(0x3c, f);
    fclose(f);
}

/* File offset of a contiguous dataset's raw data. */
static long dataset_offset(const char *path, const char *dataset) {
    hid_t f = st_h5_open_read(path);
    ST_CHECK(f >= 0, "%s", st_error_get());
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    ST_CHECK(d >= 0, "%s: no dataset %s", path, dataset);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    return (long)off;
}

static void expect_load_failure(st_model *m, const char *path, const char *part) {
    st_checkpoint ck;
    int rc = st_checkpoint_load(&ck, m, path);
    const char *msg = st_error_get();
    TEST_CHECK(rc == -1, "%s: load should fail", path);
    TEST_CHECK(strstr(msg, path) && strstr(msg, part), "%s: message lacks the file or '%s': %s", path, part, msg);
    TEST_CHECK(ck.n_blobs == 0 && ck.config_yaml == NULL, "%s: a failed load left state behind", path);
    printf("  %s -> %s\n", path, msg);
}

/* A checkpoint holding a non-finite value is refused as diverged and leaves no file behind. */
static void expect_refused(st_model *m, const char *run, const st_checkpoint *ck, const char *part) {
    int rc = st_checkpoint_save_run(ck, m, run, 2, 1);
    const char *msg = st_error_get();
    TEST_CHECK(rc == -1 && strstr(msg, "diverged") && strstr(msg, part), "non-finite %s: rc %d, %s", part, rc, msg);
    TEST_CHECK(!file_exists("checkpoint_test_run/ckpt-40.h5") && !file_exists("checkpoint_test_run/ckpt-40.h5.tmp") &&
                   !file_exists("checkpoint_test_run/best.h5.tmp"),
               "non-finite %s: a refused checkpoint left a file", part);
    printf("  refused -> %s\n", msg);
}

/* Divergence never reaches a checkpoint: an inf optimizer blob, then an inf BN moving variance. */
static void test_non_finite_refused(st_model *m, const char *run, float *m_state, size_t n_state) {
    st_checkpoint ck;
    st_checkpoint_init(&ck);
    fill_state(&ck, 40, m_state, n_state);
    const float inf_state[4] = {0.0f, 1.0f, INFINITY, 2.0f};
    st_checkpoint_add_tensor(&ck, "optimizer/v", inf_state, 4);
    expect_refused(m, run, &ck, "optimizer/v");
    st_checkpoint_free(&ck);

    st_checkpoint_init(&ck);
    fill_state(&ck, 40, m_state, n_state);
    st_param *var = NULL;
    for (int i = 0; i < m->n_params && !var; i++)
        if (strcmp(m->params[i].weight, "moving_variance") == 0) var = &m->params[i];
    float *saved = ST_MALLOC(var->numel * sizeof *saved);
    m->backend->download(m->backend, saved, var->value, var->numel * sizeof *saved);
    m->backend->fill(m->backend, var->value, INFINITY, var->numel);
    expect_refused(m, run, &ck, "moving_variance");
    m->backend->upload(m->backend, var->value, saved, var->numel * sizeof *saved);
    free(saved);
    st_checkpoint_free(&ck);
}

/* --resume's loader: past a corrupt newest checkpoint to the one before, with a warning naming
 * it; an error naming the run folder when none loads. */
static void test_load_latest_fallback(st_model *m, const char *run) {
    const char *newest = "checkpoint_test_run/ckpt-30.h5", *before = "checkpoint_test_run/ckpt-20.h5";
    const char *kernel = "model_weights/conv3_block1_1_conv/conv3_block1_1_conv/kernel:0";
    overwrite_bytes(newest, dataset_offset(newest, kernel) + 100, 8);
    FILE *log = tmpfile();
    ST_CHECK(log, "tmpfile");
    st_checkpoint ck;
    char used[512], warning[2048] = "";
    int rc = st_checkpoint_load_latest(&ck, m, run, used, sizeof used, log);
    rewind(log);
    size_t got = fread(warning, 1, sizeof warning - 1, log);
    warning[got] = '\0';
    fclose(log);
    TEST_CHECK(rc == 1 && strcmp(used, before) == 0 && ck.step == 20, "fallback: rc %d, used %s: %s", rc, used,
               st_error_get());
    TEST_CHECK(strstr(warning, newest) && strstr(warning, "checksum mismatch"), "fallback warning: %s", warning);
    if (rc == 1) st_checkpoint_free(&ck);
    overwrite_bytes(before, dataset_offset(before, kernel) + 100, 8);
    rc = st_checkpoint_load_latest(&ck, m, run, used, sizeof used, NULL);
    TEST_CHECK(rc == -1 && strstr(st_error_get(), run) && strstr(st_error_get(), "none of its 2"),
               "no checkpoint loads: rc %d, %s", rc, st_error_get());
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    const char *run = "checkpoint_test_run";
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", run, run);
    ST_CHECK(system(cmd) == 0, "cannot prepare %s", run);

    st_model *m = make_model(be, 3, 5);
    perturb_moving_stats(m);
    size_t n_state = 1000;
    float *m_state = ST_MALLOC(n_state * sizeof *m_state);
    for (size_t i = 0; i < n_state; i++) m_state[i] = (float)i * 1e-3f - 0.3f;

    /* three saves, keep the last 2, step 20 is the best */
    for (long long step = 10; step <= 30; step += 10) {
        st_checkpoint ck;
        st_checkpoint_init(&ck);
        fill_state(&ck, step, m_state, n_state);
        int rc = st_checkpoint_save_run(&ck, m, run, 2, step == 20);
        TEST_CHECK(rc == 0, "save_run step %lld: %s", step, st_error_get());
        st_checkpoint_free(&ck);
    }
    TEST_CHECK(!file_exists("checkpoint_test_run/ckpt-10.h5"), "ckpt-10 should have been pruned");
    TEST_CHECK(file_exists("checkpoint_test_run/ckpt-20.h5") && file_exists("checkpoint_test_run/ckpt-30.h5") &&
                   file_exists("checkpoint_test_run/best.h5"),
               "expected ckpt-20, ckpt-30 and best.h5");
    TEST_CHECK(!file_exists("checkpoint_test_run/ckpt-30.h5.tmp"), "temporary file left behind");
    char latest[512];
    TEST_CHECK(st_checkpoint_latest(run, latest, sizeof latest) == 1 &&
                   strcmp(latest, "checkpoint_test_run/ckpt-30.h5") == 0,
               "latest: %s", latest);

    /* round trip into a differently initialised model: bit-exact */
    st_model *m2 = make_model(be, 3, 77);
    st_checkpoint ck;
    int rc = st_checkpoint_load(&ck, m2, latest);
    TEST_CHECK(rc == 0, "load: %s", st_error_get());
    size_t n1, n2;
    float *a = download_params(m, &n1), *b = download_params(m2, &n2);
    TEST_CHECK(n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0, "parameters (incl. BN statistics) not bit-exact");
    free(a);
    free(b);
    st_checkpoint want;
    st_checkpoint_init(&want);
    fill_state(&want, 30, m_state, n_state);
    TEST_CHECK(ck.step == 30 && ck.epoch == 3, "step %lld epoch %lld", ck.step, ck.epoch);
    TEST_CHECK(ck.config_yaml && strcmp(ck.config_yaml, want.config_yaml) == 0, "config differs");
    TEST_CHECK(ck.n_blobs == want.n_blobs, "%d blobs, expected %d", ck.n_blobs, want.n_blobs);
    for (int i = 0; i < want.n_blobs; i++) {
        const st_checkpoint_blob *w = &want.blobs[i];
        size_t n = 0;
        const void *got = w->kind == ST_BLOB_F32   ? (const void *)st_checkpoint_get_tensor(&ck, w->name, &n)
                          : w->kind == ST_BLOB_U64 ? (const void *)st_checkpoint_get_u64(&ck, w->name, &n)
                                                   : (const void *)st_checkpoint_get_i32(&ck, w->name, &n);
        size_t bytes = w->n * (w->kind == ST_BLOB_U64 ? 8 : 4);
        TEST_CHECK(got && n == w->n && (bytes == 0 || memcmp(got, w->data, bytes) == 0), "blob %s differs", w->name);
    }
    st_checkpoint_free(&want);
    st_checkpoint_free(&ck);

    rc = st_checkpoint_load(&ck, m2, "checkpoint_test_run/best.h5");
    TEST_CHECK(rc == 0 && ck.step == 20, "best.h5: rc %d step %lld", rc, ck.step);
    st_checkpoint_free(&ck);

    /* a checkpoint is a weight file too */
    st_weights_info info;
    TEST_CHECK(st_weights_probe(latest, &info) == 0 && info.format == ST_WEIGHTS_CHECKPOINT &&
                   strcmp(info.arch, "tv_resnet18") == 0 && info.n_missing + info.n_unexpected + info.n_mismatched == 0,
               "probe checkpoint: %s", st_error_get());
    st_weights_info_free(&info);

    /* damaged files */
    long size;
    {
        FILE *f = fopen(latest, "rb");
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
    }
    copy_file(latest, "ckpt_truncated.h5", size / 2);
    expect_load_failure(m2, "ckpt_truncated.h5", "truncated");
    copy_file(latest, "ckpt_bad_params.h5", -1);
    overwrite_bytes("ckpt_bad_params.h5", dataset_offset(latest, "model_weights/conv3_block1_1_conv/conv3_block1_1_conv/kernel:0") + 100, 8);
    expect_load_failure(m2, "ckpt_bad_params.h5", "checksum mismatch");
    copy_file(latest, "ckpt_bad_state.h5", -1);
    overwrite_bytes("ckpt_bad_state.h5", dataset_offset(latest, "state/tensors/optimizer/m") + 40, 4);
    expect_load_failure(m2, "ckpt_bad_state.h5", "optimizer/m");
    st_model *other = make_model(be, 4, 5);
    expect_load_failure(other, latest, "predictions");
    st_model_free(other);
    TEST_CHECK(st_weights_save(m, "ckpt_plain_weights.h5", NULL) == 0, "export: %s", st_error_get());
    expect_load_failure(m2, "ckpt_plain_weights.h5", "not a simtune checkpoint");

    test_non_finite_refused(m, run, m_state, n_state);
    rc = st_checkpoint_load(&ck, m2, "checkpoint_test_run/best.h5");
    TEST_CHECK(rc == 0 && ck.step == 20, "best.h5 after refused saves: rc %d step %lld", rc, ck.step);
    if (rc == 0) st_checkpoint_free(&ck);
    test_load_latest_fallback(m2, run);

    st_model_free(m2);
    st_model_free(m);
    free(m_state);
    st_backend_close(be);
    return test_finish("test_checkpoint");
}
