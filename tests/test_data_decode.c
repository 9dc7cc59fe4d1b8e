/*
 * test_data_decode.c: data/decode.c on images this test writes itself.
 *  - PNG kinds: RGB, grey, 1-bit grey, palette + tRNS, grey+alpha, 16-bit RGB(A), interlaced;
 *    exact expected bytes (libpng's transforms are exact; compositing rounds like ours)
 *  - JPEG EXIF orientations 1..8 in both byte orders: four coloured quadrants must land in
 *    the corners the EXIF spec puts them; malformed EXIF payloads fall back to upright
 *  - DCT-domain scaling: dimensions, and scaled decode + resize vs full decode + resize
 *  - bad input: zero bytes, text, GIF, truncated/corrupt JPEG and PNG, absurd dimensions, a
 *    directory: each -1 with a message naming the file and the problem
 * Files go to the test's working directory (the build tree).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "data/image.h"
#include "data/transform.h"
#include "kernels/check.h"
#include "test_data_images.h"
#include "test_util.h"

static st_decode_opts opts_with_background(uint8_t r, uint8_t g, uint8_t b) {
    st_decode_opts o = st_decode_opts_default();
    o.background[0] = r;
    o.background[1] = g;
    o.background[2] = b;
    return o;
}

static uint8_t composite(unsigned c, unsigned a, unsigned bg) { return (uint8_t)((c * a + bg * (255 - a) + 127) / 255); }

/* Decodes path and compares with expected (h, w, 3). */
static void expect_png(const char *path, const st_decode_opts *o, int w, int h, const uint8_t *expected) {
    st_image img;
    int rc = st_image_decode_file(path, o, &img);
    TEST_CHECK(rc == 0, "%s: decode failed: %s", path, st_error_get());
    if (rc) return;
    TEST_CHECK(img.w == w && img.h == h, "%s: size %dx%d, want %dx%d", path, img.w, img.h, w, h);
    if (img.w == w && img.h == h) {
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)w * h * 3; i++) bad += img.px[i] != expected[i];
        TEST_CHECK(bad == 0, "%s: %zu of %d bytes differ from the expected pixels", path, bad, w * h * 3);
    }
    st_image_free(&img);
}

static void test_png_kinds(void) {
    enum { W = 13, H = 7 }; /* odd sizes exercise partial bytes of sub-8-bit rows and Adam7 passes */
    const st_decode_opts o = opts_with_background(10, 20, 30);
    uint8_t rgb[H * W * 3], expect[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) rgb[i] = (uint8_t)(i * 37 + 11);

    write_png("dec_rgb8.png", W, H, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0, 0);
    expect_png("dec_rgb8.png", &o, W, H, rgb);
    write_png("dec_rgb8_interlaced.png", W, H, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0, 1);
    expect_png("dec_rgb8_interlaced.png", &o, W, H, rgb);

    uint8_t grey[H * W];
    for (int i = 0; i < H * W; i++) grey[i] = (uint8_t)(i * 53 + 7);
    for (int i = 0; i < H * W; i++) expect[3 * i] = expect[3 * i + 1] = expect[3 * i + 2] = grey[i];
    write_png("dec_grey8.png", W, H, PNG_COLOR_TYPE_GRAY, 8, grey, NULL, 0, NULL, 0, 0);
    expect_png("dec_grey8.png", &o, W, H, expect);

    /* 1-bit grey: rows of ceil(13/8) = 2 bytes, MSB first; 0 -> 0, 1 -> 255 */
    uint8_t bits[H * 2];
    for (int i = 0; i < H * 2; i++) bits[i] = (uint8_t)(0xA5 ^ (i * 29));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t v = (bits[y * 2 + x / 8] >> (7 - x % 8)) & 1 ? 255 : 0;
            memset(expect + (y * W + x) * 3, v, 3);
        }
    write_png("dec_grey1.png", W, H, PNG_COLOR_TYPE_GRAY, 1, bits, NULL, 0, NULL, 0, 0);
    expect_png("dec_grey1.png", &o, W, H, expect);

    /* palette of 4 with tRNS: entry 1 half transparent, entry 3 fully transparent */
    const png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {200, 100, 50}};
    const uint8_t trns[4] = {255, 128, 255, 0};
    uint8_t idx[H * W];
    for (int i = 0; i < H * W; i++) idx[i] = (uint8_t)(i % 4);
    for (int i = 0; i < H * W; i++) {
        const png_color c = pal[idx[i]];
        expect[3 * i] = composite(c.red, trns[idx[i]], 10);
        expect[3 * i + 1] = composite(c.green, trns[idx[i]], 20);
        expect[3 * i + 2] = composite(c.blue, trns[idx[i]], 30);
    }
    write_png("dec_palette.png", W, H, PNG_COLOR_TYPE_PALETTE, 8, idx, pal, 4, trns, 4, 0);
    expect_png("dec_palette.png", &o, W, H, expect);

    uint8_t ga[H * W * 2];
    for (int i = 0; i < H * W; i++) {
        ga[2 * i] = (uint8_t)(i * 13);
        ga[2 * i + 1] = (uint8_t)(i * 71);
        expect[3 * i] = composite(ga[2 * i], ga[2 * i + 1], 10);
        expect[3 * i + 1] = composite(ga[2 * i], ga[2 * i + 1], 20);
        expect[3 * i + 2] = composite(ga[2 * i], ga[2 * i + 1], 30);
    }
    write_png("dec_grey_alpha.png", W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, NULL, 0, NULL, 0, 0);
    expect_png("dec_grey_alpha.png", &o, W, H, expect);

    /* 16-bit: big-endian samples; the decoder keeps the high byte */
    uint8_t rgb16[H * W * 6], rgba16[H * W * 8];
    for (int i = 0; i < H * W * 3; i++) {
        rgb16[2 * i] = rgb[i];
        rgb16[2 * i + 1] = (uint8_t)(255 - rgb[i]);
    }
    write_png("dec_rgb16.png", W, H, PNG_COLOR_TYPE_RGB, 16, rgb16, NULL, 0, NULL, 0, 0);
    expect_png("dec_rgb16.png", &o, W, H, rgb);
    for (int i = 0; i < H * W; i++) {
        uint8_t a = (uint8_t)(i * 41);
        for (int c = 0; c < 3; c++) {
            rgba16[8 * i + 2 * c] = rgb[3 * i + c];
            rgba16[8 * i + 2 * c + 1] = 0x80;
            expect[3 * i + c] = composite(rgb[3 * i + c], a, o.background[c]);
        }
        rgba16[8 * i + 6] = a;
        rgba16[8 * i + 7] = 0x7f;
    }
    write_png("dec_rgba16.png", W, H, PNG_COLOR_TYPE_RGB_ALPHA, 16, rgba16, NULL, 0, NULL, 0, 1);
    expect_png("dec_rgba16.png", &o, W, H, expect);
}

/* ---- EXIF ------------------------------------------------------------------------------- */

enum { QW = 48, QH = 32 };
static const uint8_t quadrant_colour[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
enum { RED, GREEN, BLUE, WHITE };

static void make_quadrants(uint8_t *rgb) { /* (QH, QW, 3): TL red, TR green, BL blue, BR white */
    for (int y = 0; y < QH; y++)
        for (int x = 0; x < QW; x++) memcpy(rgb + (y * QW + x) * 3, quadrant_colour[(y >= QH / 2) * 2 + (x >= QW / 2)], 3);
}

static int nearest_colour(const uint8_t *p) {
    int best = 0, best_d = 1 << 30;
    for (int k = 0; k < 4; k++) {
        int d = 0;
        for (int c = 0; c < 3; c++) d += (p[c] - quadrant_colour[k][c]) * (p[c] - quadrant_colour[k][c]);
        if (d < best_d) best_d = d, best = k;
    }
    return best;
}

static void test_exif_orientations(void) {
    /* displayed corners TL, TR, BL, BR for orientations 1..8 (EXIF 2.32, tag 0x0112) */
    static const int corners[9][4] = {{0},
                                      {RED, GREEN, BLUE, WHITE}, {GREEN, RED, WHITE, BLUE},
                                      {WHITE, BLUE, GREEN, RED}, {BLUE, WHITE, RED, GREEN},
                                      {RED, BLUE, GREEN, WHITE}, {BLUE, RED, WHITE, GREEN},
                                      {WHITE, GREEN, BLUE, RED}, {GREEN, WHITE, RED, BLUE}};
    uint8_t rgb[QH * QW * 3];
    make_quadrants(rgb);
    const st_decode_opts o = st_decode_opts_default();
    for (int big_endian = 0; big_endian < 2; big_endian++) {
        for (int orientation = 1; orientation <= 8; orientation++) {
            size_t size;
            uint8_t *jpg = encode_jpeg(rgb, QW, QH, 95, orientation, big_endian, &size);
            st_image img;
            int rc = st_image_decode_mem(jpg, size, "exif.jpg", &o, &img);
            free(jpg);
            TEST_CHECK(rc == 0, "orientation %d: %s", orientation, st_error_get());
            if (rc) continue;
            const int swap = orientation >= 5;
            TEST_CHECK(img.w == (swap ? QH : QW) && img.h == (swap ? QW : QH), "orientation %d: size %dx%d",
                       orientation, img.w, img.h);
            /* sample 3 px inside each corner: clear of JPEG ringing at the quadrant borders */
            const int xs[4] = {3, img.w - 4, 3, img.w - 4}, ys[4] = {3, 3, img.h - 4, img.h - 4};
            for (int k = 0; k < 4; k++) {
                int got = nearest_colour(img.px + ((size_t)ys[k] * img.w + xs[k]) * 3);
                TEST_CHECK(got == corners[orientation][k], "orientation %d (%s): corner %d has colour %d, want %d",
                           orientation, big_endian ? "MM" : "II", k, got, corners[orientation][k]);
            }
            st_image_free(&img);
        }
    }
    /* malformed payloads never read out of bounds and mean "upright" */
    uint8_t exif[64];
    size_t n = make_exif_orientation(exif, 6, 0);
    TEST_CHECK(st_exif_orientation(exif, n) == 6, "well-formed payload must give 6");
    for (size_t cut = 0; cut < n - 4; cut++) /* the entry is incomplete: must fall back to 1 */
        TEST_CHECK(st_exif_orientation(exif, cut) == 1, "truncated to %zu bytes", cut);
    exif[10] = 0xff; /* IFD offset far outside the payload */
    TEST_CHECK(st_exif_orientation(exif, n) == 1, "bad IFD offset must give 1");
    n = make_exif_orientation(exif, 9, 1);
    TEST_CHECK(st_exif_orientation(exif, n) == 1, "orientation 9 is invalid and must give 1");
}

/* ---- DCT scaling ------------------------------------------------------------------------ */

static void test_dct_scaling(void) {
    enum { W = 640, H = 480 };
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++) /* smooth content with some texture: a photo-like signal */
        for (int x = 0; x < W; x++) {
            rgb[(y * W + x) * 3 + 0] = (uint8_t)(127.5 + 120 * sin(x * 0.031) * cos(y * 0.023));
            rgb[(y * W + x) * 3 + 1] = (uint8_t)(x * 255 / W);
            rgb[(y * W + x) * 3 + 2] = (uint8_t)(127.5 + 100 * sin((x + y) * 0.11));
        }
    size_t size;
    uint8_t *jpg = encode_jpeg(rgb, W, H, 95, 0, 0, &size);
    free(rgb);
    st_decode_opts full = st_decode_opts_default(), scaled = full;
    scaled.min_short_side = 256; /* 480 * 4/8 = 240 < 256: no fast scale fits, full size */
    st_image unscaled;
    TEST_CHECK(st_image_decode_mem(jpg, size, "unscaled.jpg", &scaled, &unscaled) == 0 && unscaled.w == W &&
                   unscaled.h == H,
               "min_short_side 256 must decode full size, got %dx%d", unscaled.w, unscaled.h);
    st_image_free(&unscaled);
    scaled.min_short_side = 224; /* 480 * 4/8 = 240 >= 224 */
    st_image a, b;
    TEST_CHECK(st_image_decode_mem(jpg, size, "full.jpg", &full, &a) == 0, "full decode: %s", st_error_get());
    TEST_CHECK(st_image_decode_mem(jpg, size, "scaled.jpg", &scaled, &b) == 0, "scaled decode: %s", st_error_get());
    TEST_CHECK(a.w == W && a.h == H, "full decode size %dx%d", a.w, a.h);
    TEST_CHECK(b.w == 320 && b.h == 240, "scaled 4/8 decode size %dx%d, want 320x240", b.w, b.h);
    scaled.min_short_side = 60; /* 480 / 8 = 60: the smallest scale */
    st_image c;
    TEST_CHECK(st_image_decode_mem(jpg, size, "eighth.jpg", &scaled, &c) == 0 && c.w == 80 && c.h == 60,
               "1/8 decode size %dx%d, want 80x60", c.w, c.h);
    st_image_free(&c);
    free(jpg);

    st_transform t = st_transform_eval(224, 224, ST_PREPROCESS_TF);
    float *ya = malloc(224 * 224 * 3 * sizeof(float)), *yb = malloc(224 * 224 * 3 * sizeof(float));
    st_transform_apply(&t, &a, NULL, ya);
    st_transform_apply(&t, &b, NULL, yb);
    double sum = 0, worst = 0;
    for (int i = 0; i < 224 * 224 * 3; i++) { /* back to 0..255 units */
        double d = fabs((double)ya[i] - (double)yb[i]) * 127.5;
        sum += d;
        if (d > worst) worst = d;
    }
    const double mean = sum / (224 * 224 * 3);
    /* Tolerance: both paths low-pass the same signal to the same grid, with different filters
     * (the IDCT's implicit box-like filter vs PIL's triangle); on this smooth content the mean
     * difference measured 0.49 levels and the worst pixel 5.8 levels at the highest-frequency
     * stripes. Mean <= 1.5 and max <= 24 levels leave headroom yet catch a wrong scale, an offset
     * of even one pixel (mean > 3 here) or a channel swap. */
    TEST_CHECK(mean <= 1.5, "scaled vs full decode: mean |diff| %.3f levels > 1.5", mean);
    TEST_CHECK(worst <= 24, "scaled vs full decode: max |diff| %.1f levels > 24", worst);
    printf("dct scaling: mean |diff| %.3f, max %.1f levels (0..255)\n", mean, worst);
    free(ya);
    free(yb);
    st_image_free(&a);
    st_image_free(&b);
}

/* ---- bad input -------------------------------------------------------------------------- */

static void expect_bad(const char *path, const uint8_t *data, size_t size, const st_decode_opts *o, const char *word) {
    write_bytes(path, data, size);
    st_image img;
    int rc = st_image_decode_file(path, o, &img);
    const char *msg = st_error_get();
    TEST_CHECK(rc == -1, "%s: bad input was accepted", path);
    TEST_CHECK(img.px == NULL && img.w == 0, "%s: failure left pixels behind", path);
    TEST_CHECK(strstr(msg, path) != NULL, "%s: message does not name the file: %s", path, msg);
    const char *after_name = strstr(msg, path) ? strstr(msg, path) + strlen(path) : msg;
    TEST_CHECK(strstr(after_name, word) != NULL, "%s: message lacks '%s': %s", path, word, msg);
    printf("  %s -> %s\n", path, msg);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void test_bad_input(void) {
    const st_decode_opts o = st_decode_opts_default();
    expect_bad("bad_empty.png", (const uint8_t *)"", 0, &o, "empty");
    const char *text = "this is not an image\n";
    expect_bad("bad_text.png", (const uint8_t *)text, strlen(text), &o, "not a JPEG or PNG");
    expect_bad("bad_gif.jpg", (const uint8_t *)"GIF89a\1\0\1\0", 10, &o, "GIF");

    uint8_t rgb[QH * QW * 3];
    make_quadrants(rgb);
    size_t size;
    uint8_t *jpg = encode_jpeg(rgb, QW, QH, 90, 0, 0, &size);
    size_t big_size; /* noise compresses badly: half the file is mid-scan */
    uint8_t *noise = malloc(256 * 256 * 3);
    for (int i = 0; i < 256 * 256 * 3; i++) noise[i] = (uint8_t)((i * 2654435761u) >> 24);
    uint8_t *big = encode_jpeg(noise, 256, 256, 90, 0, 0, &big_size);
    expect_bad("bad_truncated.jpg", big, big_size / 2, &o, "truncated");
    free(big);
    free(noise);
    expect_bad("bad_header_only.jpg", jpg, 20, &o, "JPEG");
    uint8_t *garbled = malloc(size);
    memcpy(garbled, jpg, size);
    for (size_t i = 0; i < size; i++) /* wreck the quantisation/Huffman tables and the scan */
        if (i > 20 && i % 7 == 0) garbled[i] = 0xff;
    expect_bad("bad_garbled.jpg", garbled, size, &o, "JPEG");
    free(garbled);

    /* absurd JPEG dimensions: patch the SOF0 height/width to 60000 x 60000 */
    uint8_t *huge = malloc(size);
    memcpy(huge, jpg, size);
    for (size_t i = 2; i + 9 < size; i++)
        if (huge[i] == 0xFF && huge[i + 1] == 0xC0) {
            huge[i + 5] = 0xEA, huge[i + 6] = 0x60, huge[i + 7] = 0xEA, huge[i + 8] = 0x60;
            break;
        }
    expect_bad("bad_huge.jpg", huge, size, &o, "megapixels");
    free(huge);
    st_decode_opts tight = o;
    tight.max_pixels = 1000; /* 48 x 32 = 1536 > 1000: the limit is configurable */
    expect_bad("bad_limit.jpg", jpg, size, &tight, "limit");
    free(jpg);

    write_png("good.png", QW, QH, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0, 0);
    uint8_t *png;
    size_t png_size;
    TEST_CHECK(st_read_file("good.png", &png, &png_size) == 0, "cannot read back good.png");
    expect_bad("bad_truncated.png", png, png_size * 2 / 3, &o, "truncated");
    expect_bad("bad_limit.png", png, png_size, &tight, "limit");
    png[png_size / 2] ^= 0x55; /* flips bits inside IDAT: CRC or zlib error */
    expect_bad("bad_corrupt.png", png, png_size, &o, "PNG");
    free(png);

    /* a bare PNG header claiming 30000 x 30000 (valid CRC): rejected before any allocation */
    uint8_t ihdr[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put_be32(ihdr + 16, 30000);
    put_be32(ihdr + 20, 30000);
    ihdr[24] = 8, ihdr[25] = 2; /* 8-bit RGB */
    put_be32(ihdr + 29, (uint32_t)crc32(0, ihdr + 12, 17));
    memcpy(ihdr + 37, "IDAT", 4); /* an empty IDAT: libpng stops its header read here */
    put_be32(ihdr + 41, (uint32_t)crc32(0, ihdr + 37, 4));
    expect_bad("bad_huge.png", ihdr, sizeof ihdr, &o, "megapixels");

    st_image img;
    mkdir("bad_dir.png", 0755);
    TEST_CHECK(st_image_decode_file("bad_dir.png", &o, &img) == -1 && strstr(st_error_get(), "not a regular file"),
               "a directory must fail as not a regular file: %s", st_error_get());
    TEST_CHECK(st_image_decode_file("does_not_exist.png", &o, &img) == -1 &&
                   strstr(st_error_get(), "does_not_exist.png"),
               "a missing file must fail naming it");
}

int main(void) {
    test_png_kinds();
    test_exif_orientations();
    test_dct_scaling();
    test_bad_input();
    return test_finish("test_data_decode");
}
