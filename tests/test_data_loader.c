/*
 * test_data_loader.c: data/loader.c on a generated tree ./data_ld (PNG and JPEG images of
 * several sizes, plus one file of each bad kind).
 *  - training transform (random crop, flip, jitter) over 2 epochs with 1, 2 and 4 threads:
 *    every batch bit-identical (augmentation RNG from (seed, epoch, position), not timing)
 *  - a different seed gives different batches; batch images in a backend's host_alloc memory
 *    (cfg.batch_memory) give the same batches
 *  - bad files: dropped, ONE warning line per file naming it, counted in the stats; strict
 *    mode turns the first one into an error naming the file
 *  - save/restore of the loader state mid-epoch and at an epoch's end continues with
 *    identical batches
 *  - sequential mode covers every good image once, in dataset order
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "kernels/backend.h"
#include "kernels/check.h"
#include "test_data_images.h"
#include "test_util.h"

enum { N_CLASSES = 4, PER_CLASS = 9, N_BAD = 5 };

static void make_tree(void) {
    char path[256];
    mkdir("data_ld", 0755);
    for (int c = 0; c < N_CLASSES; c++) {
        snprintf(path, sizeof path, "data_ld/class%d", c);
        mkdir(path, 0755);
        for (int i = 0; i < PER_CLASS; i++) {
            const int w = 20 + 5 * i, h = 20 + 4 * c; /* sizes vary so crops vary; all < 4000 px */
            uint8_t *rgb = malloc((size_t)w * h * 3);
            for (int k = 0; k < w * h * 3; k++) rgb[k] = (uint8_t)(k * (c + 3) + i * 17);
            if (i % 2) {
                snprintf(path, sizeof path, "data_ld/class%d/img%d.png", c, i);
                write_png(path, w, h, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0, 0);
            } else {
                size_t size;
                uint8_t *jpg = encode_jpeg(rgb, w, h, 90, i % 4 == 0 ? 6 : 0, 0, &size);
                snprintf(path, sizeof path, "data_ld/class%d/img%d.jpg", c, i);
                write_bytes(path, jpg, size);
                free(jpg);
            }
            free(rgb);
        }
    }
    /* the bad ones, all in class1 */
    write_bytes("data_ld/class1/bad_empty.png", "", 0);
    write_bytes("data_ld/class1/bad_text.jpg", "hello", 5);
    write_bytes("data_ld/class1/bad_gif.png", "GIF89a\1\0\1\0", 10);
    uint8_t rgb[48 * 48 * 3]; /* noise: half the file ends inside the scan */
    for (int k = 0; k < 48 * 48 * 3; k++) rgb[k] = (uint8_t)((k * 2654435761u) >> 24);
    size_t size;
    uint8_t *jpg = encode_jpeg(rgb, 48, 48, 95, 0, 0, &size);
    write_bytes("data_ld/class1/bad_truncated.jpg", jpg, size / 2);
    free(jpg);
    /* 70 x 70 = 4900 pixels: over the 4000-pixel limit the tests configure */
    uint8_t *big = calloc(70 * 70 * 3, 1);
    write_png("data_ld/class1/bad_too_big.png", 70, 70, PNG_COLOR_TYPE_RGB, 8, big, NULL, 0, NULL, 0, 0);
    free(big);
}

typedef struct run_result {
    float *x;        /* all batches' pixels concatenated */
    int32_t *labels; /* all labels */
    int32_t *indices;
    size_t n_samples;
    int n_batches;
    st_loader_stats stats;
    int n_warning_lines;
} run_result;

static st_loader_config train_config(const st_dataset *ds, st_transform *t) {
    *t = st_transform_train(24, ST_PREPROCESS_CAFFE);
    t->brightness = t->contrast = t->saturation = 0.4;
    st_sampler_config sc = {ST_SAMPLE_SHUFFLE, 5, 0, 0, 0, 0};
    st_loader_config cfg = st_loader_config_default(ds, t, sc);
    cfg.decode.max_pixels = 4000;
    cfg.seed = 1234;
    cfg.prefetch = 3;
    return cfg;
}

static int count_lines(FILE *f) {
    rewind(f);
    int n = 0;
    for (int ch; (ch = fgetc(f)) != EOF;) n += ch == '\n';
    return n;
}

/* Runs `epochs` epochs (after restoring restore_words when given) and gathers everything. */
static run_result run(st_loader_config cfg, int epochs, const uint64_t *restore_words) {
    run_result r = {0};
    FILE *warnings = tmpfile();
    cfg.warnings = warnings;
    st_loader *L;
    if (st_loader_create(&cfg, &L)) {
        TEST_CHECK(0, "loader: %s", st_error_get());
        fclose(warnings);
        return r;
    }
    if (restore_words) TEST_CHECK(st_loader_restore_state(L, restore_words) == 0, "restore: %s", st_error_get());
    const size_t per_sample = (size_t)cfg.transform.out_h * cfg.transform.out_w * 3;
    size_t cap = 1024;
    r.x = malloc(cap * per_sample * sizeof(float));
    r.labels = malloc(cap * sizeof(int32_t));
    r.indices = malloc(cap * sizeof(int32_t));
    for (int e = 0; e < epochs; e++) {
        st_loader_begin_epoch(L);
        st_batch *b;
        int rc;
        while ((rc = st_loader_next(L, &b)) == 1) {
            TEST_CHECK(b->n > 0 && b->n + b->n_dropped <= cfg.sampler.batch_size, "batch of %d (+%d dropped)", b->n, b->n_dropped);
            TEST_CHECK(r.n_samples + (size_t)b->n <= cap, "too many samples");
            memcpy(r.x + r.n_samples * per_sample, b->x, (size_t)b->n * per_sample * sizeof(float));
            memcpy(r.labels + r.n_samples, b->labels, (size_t)b->n * sizeof(int32_t));
            memcpy(r.indices + r.n_samples, b->indices, (size_t)b->n * sizeof(int32_t));
            for (int i = 0; i < b->n; i++)
                TEST_CHECK(b->labels[i] == cfg.dataset->labels[b->indices[i]], "label of index %d", b->indices[i]);
            r.n_samples += (size_t)b->n;
            r.n_batches++;
            st_loader_release(L, b);
        }
        TEST_CHECK(rc >= 0, "next failed: %s", st_error_get());
    }
    r.stats = st_loader_get_stats(L);
    st_loader_destroy(L);
    r.n_warning_lines = count_lines(warnings);
    fclose(warnings);
    return r;
}

static void free_result(run_result *r) {
    free(r->x);
    free(r->labels);
    free(r->indices);
}

static int same_results(const run_result *a, const run_result *b, size_t per_sample) {
    return a->n_samples == b->n_samples && a->n_batches == b->n_batches &&
           !memcmp(a->x, b->x, a->n_samples * per_sample * sizeof(float)) &&
           !memcmp(a->labels, b->labels, a->n_samples * sizeof(int32_t)) &&
           !memcmp(a->indices, b->indices, a->n_samples * sizeof(int32_t));
}

static void test_determinism_and_bad_files(const st_dataset *ds) {
    st_transform t;
    st_loader_config cfg = train_config(ds, &t);
    const size_t per_sample = 24 * 24 * 3;
    run_result ref = {0};
    const int threads[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        cfg.n_threads = threads[k];
        run_result r = run(cfg, 2, NULL);
        const int good = N_CLASSES * PER_CLASS;
        TEST_CHECK(r.n_samples == 2 * (size_t)good, "%d threads: %zu samples, want %d", threads[k], r.n_samples, 2 * good);
        TEST_CHECK(r.stats.bad_files == N_BAD && r.stats.images_bad == 2 * N_BAD,
                   "%d threads: %d bad files, %lld bad samples; want %d, %d", threads[k], r.stats.bad_files,
                   (long long)r.stats.images_bad, N_BAD, 2 * N_BAD);
        TEST_CHECK(r.n_warning_lines == N_BAD, "%d threads: %d warning lines, want one per bad file (%d)", threads[k],
                   r.n_warning_lines, N_BAD);
        if (k == 0) {
            ref = r;
            continue;
        }
        TEST_CHECK(same_results(&r, &ref, per_sample), "%d threads: batches differ from 1 thread", threads[k]);
        free_result(&r);
    }
    /* the images in a backend's host_alloc memory (what a GPU trainer hands the loader, so its
     * batches upload from page-locked memory): the same batches */
    st_backend *be = st_backend_open("cpu", 1);
    cfg.batch_memory = be;
    run_result pinned = run(cfg, 2, NULL);
    TEST_CHECK(same_results(&pinned, &ref, per_sample), "batch_memory: batches differ");
    free_result(&pinned);
    cfg.batch_memory = NULL;
    st_backend_close(be);
    /* epoch 2 must not repeat epoch 1's order or augmentations */
    const size_t half = ref.n_samples / 2;
    TEST_CHECK(memcmp(ref.indices, ref.indices + half, half * sizeof(int32_t)) != 0, "epochs 0 and 1 have the same order");
    cfg.seed = 99;
    cfg.n_threads = 2;
    run_result other = run(cfg, 1, NULL);
    TEST_CHECK(other.n_samples == half && memcmp(other.x, ref.x, half * per_sample * sizeof(float)) != 0,
               "another seed must give other batches");
    free_result(&other);
    free_result(&ref);
}

static void test_warning_text(const st_dataset *ds) {
    st_transform t;
    st_loader_config cfg = train_config(ds, &t);
    FILE *warnings = tmpfile();
    cfg.warnings = warnings;
    st_loader *L;
    TEST_CHECK(st_loader_create(&cfg, &L) == 0, "create");
    st_loader_begin_epoch(L);
    st_batch *b;
    while (st_loader_next(L, &b) == 1) st_loader_release(L, b);
    st_loader_destroy(L);
    rewind(warnings);
    char line[1024];
    const char *names[N_BAD] = {"bad_empty.png", "bad_text.jpg", "bad_gif.png", "bad_truncated.jpg", "bad_too_big.png"};
    const char *problems[N_BAD] = {"empty", "not a JPEG or PNG", "GIF", "truncated", "limit"};
    int found[N_BAD] = {0};
    while (fgets(line, sizeof line, warnings))
        for (int i = 0; i < N_BAD; i++)
            if (strstr(line, names[i])) found[i] += strstr(line, problems[i]) != NULL;
    for (int i = 0; i < N_BAD; i++)
        TEST_CHECK(found[i] == 1, "%s: %d warning lines naming the file and '%s', want 1", names[i], found[i], problems[i]);
    fclose(warnings);
}

static void test_strict(const st_dataset *ds) {
    st_transform t;
    st_loader_config cfg = train_config(ds, &t);
    cfg.strict = 1;
    st_loader *L;
    TEST_CHECK(st_loader_create(&cfg, &L) == 0, "create");
    st_loader_begin_epoch(L);
    st_batch *b;
    int rc;
    while ((rc = st_loader_next(L, &b)) == 1) st_loader_release(L, b);
    TEST_CHECK(rc == -1, "strict mode must fail on a bad file");
    TEST_CHECK(strstr(st_error_get(), "data_ld/class1/bad_") != NULL, "strict error must name the file: %s", st_error_get());
    st_loader_destroy(L);
}

static void test_restore(const st_dataset *ds) {
    st_transform t;
    st_loader_config cfg = train_config(ds, &t);
    cfg.n_threads = 2;
    const size_t per_sample = 24 * 24 * 3;
    run_result full = run(cfg, 2, NULL);
    /* run 3 batches, save, then resume in a fresh loader */
    st_loader *L;
    st_loader_create(&cfg, &L);
    st_loader_begin_epoch(L);
    st_batch *b;
    size_t consumed = 0;
    for (int i = 0; i < 3 && st_loader_next(L, &b) == 1; i++) {
        consumed += (size_t)b->n;
        st_loader_release(L, b);
    }
    uint64_t words[ST_LOADER_STATE_WORDS];
    st_loader_save_state(L, words);
    st_loader_destroy(L);
    run_result rest = run(cfg, 2, words); /* the rest of epoch 0, then epoch 1 */
    TEST_CHECK(consumed + rest.n_samples == full.n_samples, "resumed run has %zu + %zu samples, want %zu", consumed,
               rest.n_samples, full.n_samples);
    if (consumed + rest.n_samples == full.n_samples)
        TEST_CHECK(!memcmp(rest.x, full.x + consumed * per_sample, rest.n_samples * per_sample * sizeof(float)) &&
                       !memcmp(rest.indices, full.indices + consumed, rest.n_samples * sizeof(int32_t)),
                   "resumed batches differ from the uninterrupted run");
    /* saved after a whole epoch: the restored loader's first epoch is epoch 1 */
    st_loader_create(&cfg, &L);
    st_loader_begin_epoch(L);
    consumed = 0;
    while (st_loader_next(L, &b) == 1) {
        consumed += (size_t)b->n;
        st_loader_release(L, b);
    }
    st_loader_save_state(L, words);
    st_loader_destroy(L);
    run_result next = run(cfg, 1, words);
    TEST_CHECK(consumed + next.n_samples == full.n_samples &&
                   !memcmp(next.x, full.x + consumed * per_sample, next.n_samples * per_sample * sizeof(float)),
               "restored after epoch 0, the next epoch differs from the uninterrupted epoch 1");
    free_result(&next);
    free_result(&full);
    free_result(&rest);
}

static void test_sequential(const st_dataset *ds) {
    st_transform t = st_transform_eval(16, 20, ST_PREPROCESS_TF);
    st_sampler_config sc = {ST_SAMPLE_SEQUENTIAL, 7, 0, 0, 0, 0};
    st_loader_config cfg = st_loader_config_default(ds, &t, sc);
    cfg.decode.max_pixels = 4000;
    cfg.n_threads = 3;
    run_result r = run(cfg, 1, NULL);
    int ordered = r.n_samples == (size_t)N_CLASSES * PER_CLASS;
    for (size_t i = 1; ordered && i < r.n_samples; i++) ordered = r.indices[i] > r.indices[i - 1];
    TEST_CHECK(ordered, "sequential mode must give every good image once in dataset order");
    free_result(&r);
}

int main(void) {
    make_tree();
    st_dataset ds;
    if (st_dataset_load("data_ld", &ds)) {
        fprintf(stderr, "FAIL: %s\n", st_error_get());
        return 1;
    }
    TEST_CHECK(ds.n == N_CLASSES * PER_CLASS + N_BAD, "dataset has %d files", ds.n);
    test_determinism_and_bad_files(&ds);
    test_warning_text(&ds);
    test_strict(&ds);
    test_restore(&ds);
    test_sequential(&ds);
    st_dataset_free(&ds);
    return test_finish("test_data_loader");
}
