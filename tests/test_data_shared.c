/*
 * test_data_shared.c: the real datasets under $SIMTUNE_SHARED_DIR/datasets (COIL-100 and ORL
 * faces, read only). Skips (77) when they are absent, except under SIMTUNE_REQUIRE_ORACLES=1.
 *  - folder loading: the counts their READMEs state (COIL-100: 99 classes, 7098 images;
 *    ORL: 40 classes x 10)
 *  - decoding: COIL PNGs are 128x128 RGB; ORL PNGs are 92x112 greyscale -> 3 equal channels
 *  - the whole loader over ORL and a stratified subset of COIL: no bad files, finite values
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "kernels/check.h"
#include "test_util.h"

static int load_shared(const char *shared, const char *name, st_dataset *ds) {
    char path[1024];
    snprintf(path, sizeof path, "%s/datasets/%s", shared, name);
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    int rc = st_dataset_load(path, ds);
    TEST_CHECK(rc == 0, "%s: %s", name, st_error_get());
    return rc == 0;
}

static void check_decode(const st_dataset *ds, int index, int w, int h, int grey) {
    st_decode_opts o = st_decode_opts_default();
    st_image img;
    int rc = st_image_decode_file(ds->paths[index], &o, &img);
    TEST_CHECK(rc == 0, "%s", st_error_get());
    if (rc) return;
    TEST_CHECK(img.w == w && img.h == h, "%s: %dx%d, want %dx%d", ds->paths[index], img.w, img.h, w, h);
    int equal_channels = 1, non_flat = 0;
    for (int i = 0; i < img.w * img.h; i++) {
        const uint8_t *p = img.px + 3 * i;
        equal_channels &= p[0] == p[1] && p[1] == p[2];
        non_flat |= p[0] != img.px[0];
    }
    if (grey) TEST_CHECK(equal_channels, "%s: greyscale must give 3 equal channels", ds->paths[index]);
    else TEST_CHECK(!equal_channels, "%s: colour image decoded as grey", ds->paths[index]);
    TEST_CHECK(non_flat, "%s: decoded to a flat image", ds->paths[index]);
    st_image_free(&img);
}

static void run_loader(const st_dataset *ds, const char *name) {
    st_transform t = st_transform_eval(112, 128, ST_PREPROCESS_TORCH);
    st_sampler_config sc = {ST_SAMPLE_SEQUENTIAL, 32, 0, 0, 0, 0};
    st_loader_config cfg = st_loader_config_default(ds, &t, sc);
    st_loader *L;
    TEST_CHECK(st_loader_create(&cfg, &L) == 0, "%s: %s", name, st_error_get());
    st_loader_begin_epoch(L);
    st_batch *b;
    long long seen = 0, finite = 1;
    while (st_loader_next(L, &b) == 1) {
        for (size_t i = 0; i < (size_t)b->n * 112 * 112 * 3; i++) finite &= isfinite(b->x[i]) && fabsf(b->x[i]) < 3.0f;
        seen += b->n;
        st_loader_release(L, b);
    }
    st_loader_stats s = st_loader_get_stats(L);
    TEST_CHECK(seen == ds->n && s.bad_files == 0, "%s: %lld of %d images, %d bad files", name, seen, ds->n, s.bad_files);
    /* torch normalisation maps 0..255 into [-2.12, 2.64] */
    TEST_CHECK(finite, "%s: values outside the torch-normalised range", name);
    st_loader_destroy(L);
}

int main(void) {
    const char *shared = getenv("SIMTUNE_SHARED_DIR");
    if (!shared) test_skip("SIMTUNE_SHARED_DIR is not set");
    st_dataset orl, coil;
    const int have_orl = load_shared(shared, "orl_faces", &orl);
    const int have_coil = load_shared(shared, "coil100", &coil);
    if (!have_orl && !have_coil && !test_failures) test_skip("no shared datasets (orl_faces, coil100)");
    if (have_orl) {
        TEST_CHECK(orl.n == 400 && orl.n_classes == 40, "ORL: %d images, %d classes; want 400, 40", orl.n, orl.n_classes);
        check_decode(&orl, 0, 92, 112, 1);
        run_loader(&orl, "orl_faces");
        st_dataset_free(&orl);
    }
    if (have_coil) {
        TEST_CHECK(coil.n == 7098 && coil.n_classes == 99, "COIL-100: %d images, %d classes; want 7098, 99", coil.n,
                   coil.n_classes);
        check_decode(&coil, 0, 128, 128, 0);
        st_dataset rest, subset; /* 5% per class keeps the test short: ~350 images */
        TEST_CHECK(st_dataset_split(&coil, 0.05, 1, &rest, &subset) == 0, "split");
        TEST_CHECK(subset.n >= 99 * 3 && subset.n <= 99 * 4, "5%% of 68-72 per class is 3-4 each: got %d", subset.n);
        run_loader(&subset, "coil100 subset");
        st_dataset_free(&rest);
        st_dataset_free(&subset);
        st_dataset_free(&coil);
    }
    return test_finish("test_data_shared");
}
