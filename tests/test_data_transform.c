/*
 * test_data_transform.c: data/transform.c.
 *  - against torchvision/PIL (fixtures from data_torchvision_fixtures.py in ./data_tv):
 *    Resize(int)+CenterCrop (down, up, odd, tall, large), Resize((h, w)), F.resized_crop and the
 *    whole ToTensor+Normalize pipeline; JPEG EXIF orientations 1..8 against PIL's decoder and
 *    ImageOps.exif_transpose; greyscale and CMYK JPEGs against PIL's conversion to RGB
 *  - without an oracle: preprocessing constants and channel order, flips, RandomResizedCrop
 *    windows (bounds, scale and ratio ranges, determinism by RNG state), colour jitter identities
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/transform.h"
#include "kernels/check.h"
#include "test_util.h"

/* PIL resamples in two passes, rounding to uint8 after each; we keep floats. The triangle
 * weights are non-negative and sum to 1, so the first rounding (<= 0.5) passes through the
 * second pass at most unchanged, and the final rounding adds <= 0.5: |ours - PIL| <= 1.0 level,
 * plus ~1e-3 for PIL's 22-bit fixed-point weights. */
static const double PIL_ATOL = 1.01;

static float *read_floats(const char *path, size_t n) {
    uint8_t *data;
    size_t size;
    if (st_read_file(path, &data, &size) || size != n * sizeof(float)) {
        fprintf(stderr, "FAIL: %s: cannot read %zu floats\n", path, n);
        free(data);
        return NULL;
    }
    return (float *)data;
}

static void run_oracle_case(const char *line) {
    char name[128], src[512], op[32], ref_path[512];
    int a, b, c, d, out_h, out_w;
    if (sscanf(line, "%127s %511s %31s %d %d %d %d %d %d %511s", name, src, op, &a, &b, &c, &d, &out_h, &out_w,
               ref_path) != 10) {
        TEST_CHECK(0, "malformed case line: %s", line);
        return;
    }
    st_decode_opts opts = st_decode_opts_default();
    st_image img;
    if (st_image_decode_file(src, &opts, &img)) {
        TEST_CHECK(0, "%s", st_error_get());
        return;
    }
    const size_t n = (size_t)out_h * out_w * 3;
    float *ref = read_floats(ref_path, n), *got = malloc(n * sizeof(float));
    TEST_CHECK(ref != NULL, "%s: reference missing", name);
    if (ref) {
        st_transform t = st_transform_eval(out_h, a, ST_PREPROCESS_TF);
        t.out_w = out_w;
        if (!strcmp(op, "decode")) { /* the decoder itself, against PIL + exif_transpose */
            TEST_CHECK(img.w == out_w && img.h == out_h, "%s: %dx%d, want %dx%d", name, img.w, img.h, out_w, out_h);
            for (size_t i = 0; i < n && img.w == out_w && img.h == out_h; i++) got[i] = img.px[i];
        } else if (!strcmp(op, "resized_crop")) {
            st_resample_box box = {b, a, b + d, a + c, b, a, b + d, a + c}; /* crop then resize */
            st_resample(&img, &box, out_w, out_h, got);
        } else {
            if (!strcmp(op, "resize_exact")) t.geometry = ST_GEOM_RESIZE_EXACT;
            if (!strcmp(op, "torch_norm")) t.preprocess = ST_PREPROCESS_TORCH;
            st_transform_apply(&t, &img, NULL, got);
            if (t.preprocess == ST_PREPROCESS_TF) /* back to 0..255: exact to ~3e-5 in float */
                for (size_t i = 0; i < n; i++) got[i] = (got[i] + 1.0f) * 127.5f;
        }
        /* torch_norm: the same 1-level bound divided by 255 * the smallest std (0.224) */
        /* decode: PIL links the same libjpeg-turbo with the same defaults (ISLOW IDCT, fancy
         * upsampling), so the pixels must be identical. */
        const double atol = !strcmp(op, "torch_norm") ? PIL_ATOL / (255.0 * 0.224) + 1e-5
                            : !strcmp(op, "decode")   ? 0
                                                      : PIL_ATOL + 1e-4;
        double worst = 0, sum = 0;
        for (size_t i = 0; i < n; i++) {
            double diff = fabs((double)got[i] - (double)ref[i]);
            sum += diff;
            if (diff > worst) worst = diff;
        }
        printf("  %-14s %-12s %3dx%-3d max |diff| %.4f mean %.4f (atol %.4f)\n", name, op, out_w, out_h, worst,
               sum / (double)n, atol);
        TEST_CLOSE(name, got, ref, n, atol, 0);
        /* rounding errors average out: a systematic offset (wrong centre) would not */
        TEST_CHECK(sum / (double)n <= atol * 0.5, "%s: mean |diff| %.4f suggests a systematic error", name, sum / (double)n);
    }
    free(ref);
    free(got);
    st_image_free(&img);
}

static void test_against_torchvision(void) {
    FILE *f = fopen("data_tv/cases.txt", "r");
    if (!f) {
        if (test_failures) return; /* report the failures rather than skipping */
        test_skip("data_tv/cases.txt missing (the torchvision fixture test did not run)");
    }
    char line[2048];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '\n') continue;
        run_oracle_case(line);
        cases++;
    }
    fclose(f);
    TEST_CHECK(cases >= 19, "only %d torchvision cases", cases);
}

static void test_preprocessing(void) {
    float px[3] = {10, 20, 30};
    st_preprocess_apply(ST_PREPROCESS_CAFFE, px, 1);
    float want_caffe[3] = {30 - 103.939f, 20 - 116.779f, 10 - 123.68f}; /* BGR, Keras caffe means */
    TEST_CLOSE("caffe", px, want_caffe, 3, 1e-4, 0);
    float tf[3] = {0, 127.5f, 255};
    st_preprocess_apply(ST_PREPROCESS_TF, tf, 1);
    float want_tf[3] = {-1, 0, 1};
    TEST_CLOSE("tf", tf, want_tf, 3, 1e-6, 0);
    float torch[3] = {255, 0, 127.5f};
    st_preprocess_apply(ST_PREPROCESS_TORCH, torch, 1);
    float want_torch[3] = {(1 - 0.485f) / 0.229f, (0 - 0.456f) / 0.224f, (0.5f - 0.406f) / 0.225f};
    TEST_CLOSE("torch", torch, want_torch, 3, 1e-5, 0);
    st_preprocess mode;
    TEST_CHECK(st_preprocess_parse("torch", &mode) == 0 && mode == ST_PREPROCESS_TORCH, "parse torch");
    TEST_CHECK(st_preprocess_parse("keras", &mode) == -1 && strstr(st_error_get(), "keras"), "bad mode must fail");
}

static st_image gradient_image(int w, int h) {
    st_image img = {malloc((size_t)w * h * 3), w, h};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)((x * 7 + y * 3) % 256);
        }
    return img;
}

static void test_random_crop_and_flip(void) {
    st_image img = gradient_image(200, 120);
    st_transform t = st_transform_train(32, ST_PREPROCESS_TF);
    t.hflip_prob = 0;
    float *a = malloc(32 * 32 * 3 * sizeof(float)), *b = malloc(32 * 32 * 3 * sizeof(float));
    for (int i = 0; i < 50; i++) {
        st_rng r1, r2;
        st_rng_derive(&r1, 7, 0, (uint64_t)i);
        r2 = r1;
        st_transform_apply(&t, &img, &r1, a);
        st_transform_apply(&t, &img, &r2, b);
        TEST_CHECK(!memcmp(a, b, 32 * 32 * 3 * sizeof(float)), "same RNG state must give the same crop");
        for (int k = 0; k < 32 * 32 * 3; k++) TEST_CHECK(a[k] >= -1.0001f && a[k] <= 1.0001f, "value outside range");
        if (test_failures) break;
    }
    /* the x gradient is red: a flip reverses it along each row */
    st_transform flip = st_transform_eval(32, 32, ST_PREPROCESS_TF);
    flip.geometry = ST_GEOM_RESIZE_EXACT;
    st_transform_apply(&flip, &img, NULL, a);
    flip.hflip_prob = 1.0;
    st_rng r;
    st_rng_seed(&r, 1);
    st_transform_apply(&flip, &img, &r, b);
    int mirrored = 1;
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++) mirrored &= a[(y * 32 + x) * 3 + c] == b[(y * 32 + 31 - x) * 3 + c];
    TEST_CHECK(mirrored, "hflip_prob 1 must mirror every row");
    TEST_CHECK(a[0] < a[31 * 3], "red must increase left to right in the unflipped image");
    free(a);
    free(b);
    st_image_free(&img);
}

/* The crop window statistics: with scale (0.08, 1) and ratio (3/4, 4/3) on a big image the
 * first try nearly always fits, so areas and aspects must fill their ranges. */
static void test_random_crop_window_ranges(void) {
    st_image img = gradient_image(1000, 1000);
    st_transform t = st_transform_train(16, ST_PREPROCESS_TF);
    t.hflip_prob = 0;
    t.scale_min = t.scale_max = 0.25; /* fixed area: a 500x500-ish window, resampled to 16x16 */
    t.ratio_min = t.ratio_max = 1.0;
    float out[16 * 16 * 3];
    double min_red = 1e9, max_red = -1e9;
    for (int i = 0; i < 200; i++) {
        st_rng r;
        st_rng_derive(&r, 3, 1, (uint64_t)i);
        st_transform_apply(&t, &img, &r, out);
        /* red = x gradient: a window of width 500 spans 127.5 levels of red across the output */
        double span = (out[15 * 3] - out[0]) * 127.5;
        TEST_CHECK(fabs(span - 127.5 * 15.0 / 16.0) < 4, "crop %d: red span %.1f, want ~119.5 (width 500)", i, span);
        double left = (out[0] + 1) * 127.5;
        if (left < min_red) min_red = left;
        if (left > max_red) max_red = left;
        if (test_failures) break;
    }
    /* the left edge is uniform in [0, 500]: red at column 0 spans ~0..127 over 200 draws */
    TEST_CHECK(min_red < 15 && max_red > 110, "crop positions not spread: red at left %.1f..%.1f", min_red, max_red);
    st_image_free(&img);
}

static void test_jitter(void) {
    st_image img = gradient_image(40, 30);
    st_transform plain = st_transform_eval(24, 24, ST_PREPROCESS_TF);
    st_transform jitter = plain;
    jitter.saturation = 1.0;
    float a[24 * 24 * 3], b[24 * 24 * 3];
    st_transform_apply(&plain, &img, NULL, a);
    int changed = 0;
    for (int i = 0; i < 8; i++) {
        st_rng r;
        st_rng_seed(&r, (uint64_t)i);
        st_transform_apply(&jitter, &img, &r, b);
        changed += memcmp(a, b, sizeof a) != 0;
    }
    TEST_CHECK(changed >= 6, "saturation jitter changed only %d of 8 images", changed);
    /* grey image: saturation and contrast of a flat grey are no-ops, brightness scales it */
    st_image grey = {malloc(40 * 30 * 3), 40, 30};
    memset(grey.px, 100, 40 * 30 * 3);
    jitter.contrast = 0.5;
    st_rng r;
    st_rng_seed(&r, 5);
    st_transform_apply(&jitter, &grey, &r, b);
    for (int i = 0; i < 24 * 24 * 3; i++)
        TEST_CHECK(fabs((b[i] + 1) * 127.5 - 100) < 1e-3, "flat grey changed by contrast/saturation at %d: %g", i,
                   (b[i] + 1) * 127.5);
    st_image_free(&grey);
    st_image_free(&img);
}

static void test_validate(void) {
    st_transform t = st_transform_eval(224, 200, ST_PREPROCESS_TF);
    TEST_CHECK(st_transform_validate(&t, "cfg") == -1 && strstr(st_error_get(), "resize 200"), "resize < crop must fail");
    t = st_transform_train(224, ST_PREPROCESS_TF);
    t.scale_min = 0;
    TEST_CHECK(st_transform_validate(&t, "cfg") == -1, "scale_min 0 must fail");
    t = st_transform_train(224, ST_PREPROCESS_TF);
    TEST_CHECK(st_transform_validate(&t, "cfg") == 0, "defaults must validate: %s", st_error_get());
}

/* An image already at the input size is not resampled by the evaluation geometries, even when
 * the shorter side would otherwise be resized first (resize_short > size). Exact equality: the
 * only arithmetic is the preprocessing, identical on both sides. */
static void test_input_size_untouched(void) {
    st_image img = {malloc(40 * 40 * 3), 40, 40};
    for (int i = 0; i < 40 * 40 * 3; i++) img.px[i] = (uint8_t)((i * 37) % 251);
    float *out = malloc(sizeof(float) * 40 * 40 * 3), *ref = malloc(sizeof(float) * 40 * 40 * 3);
    for (int i = 0; i < 40 * 40 * 3; i++) ref[i] = img.px[i];
    st_preprocess_apply(ST_PREPROCESS_TORCH, ref, 40 * 40);
    st_transform t = st_transform_eval(40, 40 * 256 / 224, ST_PREPROCESS_TORCH);
    st_transform_apply(&t, &img, NULL, out);
    TEST_CHECK(memcmp(out, ref, sizeof(float) * 40 * 40 * 3) == 0, "resize+crop resampled a 40x40 image at size 40");
    t.geometry = ST_GEOM_RESIZE_EXACT;
    st_transform_apply(&t, &img, NULL, out);
    TEST_CHECK(memcmp(out, ref, sizeof(float) * 40 * 40 * 3) == 0, "exact resize resampled a 40x40 image at size 40");
    free(img.px);
    free(out);
    free(ref);
}

int main(void) {
    test_input_size_untouched();
    test_preprocessing();
    test_random_crop_and_flip();
    test_random_crop_window_ranges();
    test_jitter();
    test_validate();
    test_against_torchvision(); /* last: it may skip (exit 77) when the oracle is absent */
    return test_finish("test_data_transform");
}
