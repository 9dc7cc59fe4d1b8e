/*
 * decode.c: JPEG (libjpeg-turbo) and PNG (libpng) to 8-bit RGB; contract in image.h.
 *
 * Both libraries report fatal errors through a callback that must not return. Their defaults
 * print and exit(), so each decode installs its own handler that formats the message and
 * longjmps back to the decode function, which frees what it allocated and returns -1.
 * Pointers written after setjmp are volatile so they survive the longjmp (C11 7.13.2.1).
 */
#include "data/image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "kernels/check.h"

/* A progressive JPEG may hold thousands of tiny scans that each cost a full pass over the
 * coefficients (a known decoding-time attack); no real encoder writes more than a few dozen. */
enum { JPEG_MAX_SCANS = 500 };

st_decode_opts st_decode_opts_default(void) {
    st_decode_opts o;
    o.max_pixels = (int64_t)ST_DEFAULT_MAX_MEGAPIXELS * 1000 * 1000;
    o.min_short_side = 0;
    o.background[0] = o.background[1] = o.background[2] = 255;
    return o;
}

void st_image_free(st_image *img) {
    free(img->px);
    img->px = NULL;
    img->w = img->h = 0;
}

static int check_pixel_limit(const char *name, const char *format, int64_t w, int64_t h, int64_t max_pixels) {
    if (w <= 0 || h <= 0) return st_error_set("%s: %s: empty image (%lld x %lld)", name, format, (long long)w, (long long)h);
    if (w * h > max_pixels)
        return st_error_set("%s: %s: %lld x %lld = %lld pixels (%.1f megapixels) is above the limit of %lld "
                            "(HINT: raise the pixel limit if the image is genuine)",
                            name, format, (long long)w, (long long)h, (long long)(w * h), (double)(w * h) / 1e6,
                            (long long)max_pixels);
    return 0;
}

/* ---- EXIF orientation ------------------------------------------------------------------- */

static unsigned exif_u16(const uint8_t *p, int big_endian) {
    return big_endian ? (unsigned)(p[0] << 8 | p[1]) : (unsigned)(p[1] << 8 | p[0]);
}

static uint32_t exif_u32(const uint8_t *p, int big_endian) {
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int st_exif_orientation(const uint8_t *payload, size_t size) {
    enum { EXIF_HEADER = 6, TAG_ORIENTATION = 0x0112, TYPE_SHORT = 3, ENTRY_BYTES = 12 };
    if (size < EXIF_HEADER + 8 || memcmp(payload, "Exif\0\0", EXIF_HEADER) != 0) return 1;
    const uint8_t *tiff = payload + EXIF_HEADER; /* offsets inside EXIF count from here */
    size_t tiff_size = size - EXIF_HEADER;
    int big_endian;
    if (tiff[0] == 'M' && tiff[1] == 'M') big_endian = 1;
    else if (tiff[0] == 'I' && tiff[1] == 'I') big_endian = 0;
    else return 1;
    if (exif_u16(tiff + 2, big_endian) != 42) return 1;
    uint64_t ifd = exif_u32(tiff + 4, big_endian);
    if (ifd + 2 > tiff_size) return 1;
    unsigned n_entries = exif_u16(tiff + ifd, big_endian);
    for (unsigned i = 0; i < n_entries; i++) {
        uint64_t entry = ifd + 2 + (uint64_t)i * ENTRY_BYTES;
        if (entry + ENTRY_BYTES > tiff_size) return 1;
        if (exif_u16(tiff + entry, big_endian) != TAG_ORIENTATION) continue;
        if (exif_u16(tiff + entry + 2, big_endian) != TYPE_SHORT || exif_u32(tiff + entry + 4, big_endian) != 1)
            return 1;
        unsigned value = exif_u16(tiff + entry + 8, big_endian);
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}

void st_image_orient(st_image *img, int orientation) {
    if (orientation <= 1 || orientation > 8) return;
    const int w = img->w, h = img->h;
    const int swap = orientation >= 5; /* 5..8 transpose the axes */
    const int out_w = swap ? h : w, out_h = swap ? w : h;
    uint8_t *out = ST_MALLOC((size_t)w * h * 3);
    for (int yo = 0; yo < out_h; yo++) {
        for (int xo = 0; xo < out_w; xo++) {
            int xs, ys; /* the stored pixel shown at (xo, yo) */
            switch (orientation) {
            case 2: xs = w - 1 - xo; ys = yo; break;              /* mirror left-right */
            case 3: xs = w - 1 - xo; ys = h - 1 - yo; break;      /* rotate 180 */
            case 4: xs = xo; ys = h - 1 - yo; break;              /* mirror top-bottom */
            case 5: xs = yo; ys = xo; break;                      /* transpose */
            case 6: xs = yo; ys = h - 1 - xo; break;              /* rotate 90 clockwise */
            case 7: xs = w - 1 - yo; ys = h - 1 - xo; break;      /* transverse */
            default: xs = w - 1 - yo; ys = xo; break;             /* 8: rotate 90 counter-clockwise */
            }
            memcpy(out + ((size_t)yo * out_w + xo) * 3, img->px + ((size_t)ys * w + xs) * 3, 3);
        }
    }
    free(img->px);
    img->px = out;
    img->w = out_w;
    img->h = out_h;
}

/* ---- JPEG ------------------------------------------------------------------------------- */

typedef struct jpeg_error_state {
    struct jpeg_error_mgr base; /* first member: libjpeg hands us a pointer to it */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int truncated;
} jpeg_error_state;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_error_state *e = (jpeg_error_state *)cinfo->err;
    cinfo->err->format_message(cinfo, e->message);
    longjmp(e->jump, 1);
}

/* Warnings (level -1) are tolerated like other decoders do, except a premature end of file: a
 * truncated JPEG decodes to grey rows that would silently enter training. Trace messages
 * (level >= 0) are dropped. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    jpeg_error_state *e = (jpeg_error_state *)cinfo->err;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    cinfo->err->num_warnings++;
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (d->input_scan_number > JPEG_MAX_SCANS) {
            jpeg_error_state *e = (jpeg_error_state *)cinfo->err;
            snprintf(e->message, sizeof e->message, "more than %d progressive scans", JPEG_MAX_SCANS);
            longjmp(e->jump, 1);
        }
    }
}

/* The smallest M in {1, 2, 4} whose M/8-scaled shorter side is >= target (libjpeg rounds up),
 * else 8 (full size). Only these scales have SIMD inverse DCTs in libjpeg-turbo; the others
 * (3/8, 5/8, ...) run scalar IDCTs that measured slower than a full-size decode. */
static int jpeg_scale_numerator(int w, int h, int target) {
    if (target <= 0) return 8;
    int64_t short_side = w < h ? w : h;
    for (int m = 1; m < 8; m *= 2)
        if ((short_side * m + 7) / 8 >= target) return m;
    return 8;
}

static int jpeg_find_orientation(j_decompress_ptr cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        int o = st_exif_orientation(m->data, m->data_length);
        if (o != 1) return o;
    }
    return 1;
}

/* Adobe CMYK/YCCK JPEGs store inverted ink values: R = C*K/255 on the stored bytes. */
static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int w) {
    for (int x = 0; x < w; x++) {
        unsigned k = cmyk[4 * x + 3];
        for (int c = 0; c < 3; c++) rgb[3 * x + c] = (uint8_t)((cmyk[4 * x + c] * k + 127) / 255);
    }
}

static int decode_jpeg(const uint8_t *data, size_t size, const char *name, const st_decode_opts *opts,
                       st_image *out) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    jpeg_error_state err;
    uint8_t *volatile px = NULL;
    uint8_t *volatile cmyk_row = NULL;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = jpeg_on_error;
    err.base.emit_message = jpeg_on_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(px);
        free(cmyk_row);
        return st_error_set("%s: JPEG: %s", name, err.message);
    }
    jpeg_create_decompress(&cinfo);
    progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    if (check_pixel_limit(name, "JPEG", cinfo.image_width, cinfo.image_height, opts->max_pixels)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    const int orientation = jpeg_find_orientation(&cinfo);
    const int is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.scale_num = (unsigned)jpeg_scale_numerator((int)cinfo.image_width, (int)cinfo.image_height,
                                                     opts->min_short_side);
    cinfo.scale_denom = 8;
    jpeg_start_decompress(&cinfo);
    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    px = ST_MALLOC((size_t)w * h * 3);
    if (is_cmyk) cmyk_row = ST_MALLOC((size_t)w * 4);
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *row = px + (size_t)cinfo.output_scanline * w * 3;
        JSAMPROW target = is_cmyk ? cmyk_row : row;
        jpeg_read_scanlines(&cinfo, &target, 1);
        if (is_cmyk) cmyk_row_to_rgb(cmyk_row, row, w);
    }
    if (err.truncated) {
        jpeg_destroy_decompress(&cinfo);
        free(px);
        free(cmyk_row);
        return st_error_set("%s: JPEG: truncated (premature end of file)", name);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    out->px = px;
    out->w = w;
    out->h = h;
    st_image_orient(out, orientation);
    return 0;
}

/* ---- PNG -------------------------------------------------------------------------------- */

typedef struct png_source {
    const uint8_t *data;
    size_t size, pos;
    char message[256];
} png_source;

static void png_on_error(png_structp png, png_const_charp message) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message; /* benign (e.g. an unknown ancillary chunk); errors go through png_on_error */
}

static void png_read_bytes(png_structp png, png_bytep dest, size_t n) {
    png_source *src = png_get_io_ptr(png);
    if (n > src->size - src->pos) png_error(png, "truncated (premature end of file)");
    memcpy(dest, src->data + src->pos, n);
    src->pos += n;
}

/* Requests libpng transforms so every row arrives as 8-bit RGBA whatever the stored format. */
static void png_request_rgba8(png_structp png, png_infop info) {
    const int color_type = png_get_color_type(png, info);
    const int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (bit_depth == 16) png_set_strip_16(png); /* keep the high byte, as other decoders do */
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if (!(color_type & PNG_COLOR_MASK_ALPHA) && !png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_filler(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* out = alpha * colour + (1 - alpha) * background, rounded, on 8-bit values. */
static void composite_rgba(const uint8_t *rgba, uint8_t *rgb, size_t n_pixels, const uint8_t background[3]) {
    for (size_t i = 0; i < n_pixels; i++) {
        unsigned a = rgba[4 * i + 3];
        for (int c = 0; c < 3; c++)
            rgb[3 * i + c] = (uint8_t)((rgba[4 * i + c] * a + background[c] * (255 - a) + 127) / 255);
    }
}

static int decode_png(const uint8_t *data, size_t size, const char *name, const st_decode_opts *opts,
                      st_image *out) {
    png_source src = {data, size, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    ST_CHECK(png, "libpng: cannot create a read struct (out of memory)");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        ST_FAIL("libpng: cannot create an info struct (out of memory)");
    }
    uint8_t *volatile rgba = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rgba);
        free(rows);
        return st_error_set("%s: PNG: %s", name, src.message);
    }
    png_set_read_fn(png, &src, png_read_bytes);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)64 << 20); /* caps text/ICC chunk allocations */
    png_read_info(png, info);
    const int64_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_pixel_limit(name, "PNG", w, h, opts->max_pixels)) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_request_rgba8(png, info);
    ST_CHECK(png_get_rowbytes(png, info) == (size_t)w * 4, "%s: libpng rows are not 8-bit RGBA", name);
    rgba = ST_MALLOC((size_t)w * h * 4);
    rows = ST_MALLOC((size_t)h * sizeof *rows);
    for (int64_t y = 0; y < h; y++) rows[y] = rgba + (size_t)y * w * 4;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->px = ST_MALLOC((size_t)w * h * 3);
    out->w = (int)w;
    out->h = (int)h;
    composite_rgba(rgba, out->px, (size_t)w * h, opts->background);
    free(rgba);
    free(rows);
    return 0;
}

/* ---- dispatch --------------------------------------------------------------------------- */

static const char *sniff_other_format(const uint8_t *d, size_t n) {
    if (n >= 4 && !memcmp(d, "GIF8", 4)) return "GIF";
    if (n >= 2 && !memcmp(d, "BM", 2)) return "BMP";
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return "WebP";
    if (n >= 4 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4))) return "TIFF";
    return NULL;
}

int st_image_decode_mem(const uint8_t *data, size_t size, const char *name, const st_decode_opts *opts,
                        st_image *out) {
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    out->px = NULL;
    out->w = out->h = 0;
    if (size == 0) return st_error_set("%s: empty file (0 bytes)", name);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, name, opts, out);
    if (size >= 8 && !memcmp(data, png_signature, 8)) return decode_png(data, size, name, opts, out);
    const char *other = sniff_other_format(data, size);
    if (other) return st_error_set("%s: unsupported image format %s (HINT: convert it to PNG or JPEG)", name, other);
    return st_error_set("%s: not a JPEG or PNG image (unrecognised signature)", name);
}

int st_read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return st_error_set("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return st_error_set("%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > ST_MAX_FILE_BYTES) {
        fclose(f);
        return st_error_set("%s: %.1f GB is larger than the %.1f GB any input file may have", path,
                            (double)st.st_size / 1e9, (double)ST_MAX_FILE_BYTES / 1e9);
    }
    const size_t expected = (size_t)st.st_size;
    uint8_t *buf = ST_MALLOC(expected + 1); /* + 1: a file that grew is noticed, not truncated */
    const size_t n = fread(buf, 1, expected + 1, f);
    const int failed = ferror(f);
    const int saved_errno = errno;
    fclose(f);
    if (failed || n != expected) {
        free(buf);
        return st_error_set("%s: read error: %s", path, failed ? strerror(saved_errno) : "the file changed size while read");
    }
    *data = buf;
    *size = n;
    return 0;
}

int st_image_decode_file(const char *path, const st_decode_opts *opts, st_image *out) {
    uint8_t *data;
    size_t size;
    out->px = NULL;
    out->w = out->h = 0;
    if (st_read_file(path, &data, &size)) return -1;
    int rc = st_image_decode_mem(data, size, path, opts, out);
    free(data);
    return rc;
}
