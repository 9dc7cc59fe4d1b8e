/*
 * test_data_images.h: writers for the data tests' own fixture images (libpng, libjpeg), so the
 * decoder tests need no external tool. Header-only; each helper exits the test on I/O failure
 * (a broken test environment, not a condition under test).
 *
 *   write_png(path, w, h, color_type, bit_depth, pixels, palette, n_palette, trns, n_trns, interlace)
 *       pixels: packed rows exactly as libpng takes them for that type/depth (16-bit big-endian)
 *   encode_jpeg(rgb, w, h, quality, exif_orientation, exif_big_endian, &size) -> malloc'd JPEG
 *       rgb (h, w, 3); exif_orientation 0 = no APP1, 1..8 = an Exif APP1 with that tag
 *   write_bytes(path, data, size)
 */
#ifndef ST_TEST_DATA_IMAGES_H
#define ST_TEST_DATA_IMAGES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

static void write_bytes(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "test setup: cannot write %s\n", path);
        exit(1);
    }
}

static void write_png(const char *path, int w, int h, int color_type, int bit_depth, const uint8_t *pixels,
                      const png_color *palette, int n_palette, const uint8_t *trns, int n_trns, int interlace) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "test setup: cannot write PNG %s\n", path);
        exit(1);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bit_depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, n_palette);
    if (trns) png_set_tRNS(png, info, trns, n_trns, NULL);
    png_write_info(png, info);
    const size_t row_bytes = png_get_rowbytes(png, info);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)pixels + (size_t)y * row_bytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

/* A minimal Exif APP1 payload: "Exif\0\0", TIFF header, IFD0 with one Orientation entry. */
static size_t make_exif_orientation(uint8_t *out, int orientation, int big_endian) {
    static const uint8_t ii[] = {'I', 'I', 42, 0, 8, 0, 0, 0};
    static const uint8_t mm[] = {'M', 'M', 0, 42, 0, 0, 0, 8};
    size_t n = 0;
    memcpy(out, "Exif\0\0", 6);
    n = 6;
    memcpy(out + n, big_endian ? mm : ii, 8);
    n += 8;
    const uint8_t count_le[] = {1, 0}, count_be[] = {0, 1};
    memcpy(out + n, big_endian ? count_be : count_le, 2);
    n += 2;
    /* tag 0x0112, type 3 (SHORT), count 1, value in the first 2 bytes of the 4-byte field */
    const uint8_t entry_le[12] = {0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)orientation, 0, 0, 0};
    const uint8_t entry_be[12] = {0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)orientation, 0, 0};
    memcpy(out + n, big_endian ? entry_be : entry_le, 12);
    n += 12;
    memset(out + n, 0, 4); /* no next IFD */
    return n + 4;
}

static uint8_t *encode_jpeg(const uint8_t *rgb, int w, int h, int quality, int exif_orientation, int big_endian,
                            size_t *size) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    unsigned char *buf = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (exif_orientation) {
        uint8_t exif[64];
        size_t n = make_exif_orientation(exif, exif_orientation, big_endian);
        jpeg_write_marker(&c, JPEG_APP0 + 1, exif, (unsigned)n);
    }
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *size = len;
    return buf;
}

#endif
