/* encode.c: PNG and JPEG writers over libpng and libjpeg-turbo, errors caught, files atomic. */
#include "data/encode.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <jpeglib.h>
#include <png.h>
#include <string.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "kernels/check.h"

/* Finish a file from st_atomic_open; ok = 0 when the encoder failed (then it is dropped). */
static int finish_atomic(FILE *f, const char *tmp, const char *path, int ok) {
    if (ok) return st_atomic_commit(f, tmp, path);
    int err = errno;
    st_atomic_abort(f, tmp);
    return st_error_set("%s: write failed: %s", path, strerror(err));
}

int st_image_write_png(const char *path, const st_image *img) {
    char tmp[4200];
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    volatile int ok = png && info;
    if (ok && setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < img->h; y++) png_write_row(png, img->px + (size_t)y * img->w * 3);
        png_write_end(png, NULL);
    } else {
        ok = 0;
    }
    png_destroy_write_struct(&png, &info);
    return finish_atomic(f, tmp, path, ok);
}

typedef struct jpeg_error {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
} jpeg_error;

static void jpeg_error_exit(j_common_ptr cinfo) { longjmp(((jpeg_error *)cinfo->err)->jump, 1); }

int st_image_write_jpeg(const char *path, const st_image *img, int quality) {
    char tmp[4200];
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    struct jpeg_compress_struct cinfo;
    jpeg_error err;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_error_exit;
    volatile int ok = 1;
    if (setjmp(err.jump) == 0) {
        jpeg_create_compress(&cinfo);
        jpeg_stdio_dest(&cinfo, f);
        cinfo.image_width = (JDIMENSION)img->w;
        cinfo.image_height = (JDIMENSION)img->h;
        cinfo.input_components = 3;
        cinfo.in_color_space = JCS_RGB;
        jpeg_set_defaults(&cinfo);
        jpeg_set_quality(&cinfo, quality, TRUE);
        jpeg_start_compress(&cinfo, TRUE);
        while (cinfo.next_scanline < cinfo.image_height) {
            JSAMPROW row = img->px + (size_t)cinfo.next_scanline * img->w * 3;
            jpeg_write_scanlines(&cinfo, &row, 1);
        }
        jpeg_finish_compress(&cinfo);
    } else {
        ok = 0;
    }
    jpeg_destroy_compress(&cinfo);
    return finish_atomic(f, tmp, path, ok);
}
