/*
 * image.h: decoded 8-bit RGB images and the JPEG/PNG decoders (data/decode.c).
 *
 * An st_image owns `px`, interleaved RGB bytes, row-major: px[(y * w + x) * 3 + c], c = R,G,B.
 * Every decoder output is 3-channel: grey is replicated, palette expanded, 16-bit reduced to 8,
 * alpha composited on opts.background.
 *
 * JPEG (libjpeg-turbo): when opts.min_short_side > 0 the decoder lets libjpeg scale by M/8 in
 * the DCT domain, M in {1, 2, 4} (the scales with fast IDCTs), choosing the smallest M whose
 * scaled shorter side is still >= min_short_side, so a later antialiased resize never
 * upsamples; otherwise it decodes at full size. The EXIF orientation tag (APP1) is honoured:
 * the returned image is upright (w/h swapped for orientations 5-8).
 * PNG (libpng): every colour type and bit depth, interlaced or not, tRNS as alpha.
 *
 * Bad input (corrupt, truncated, empty, not an image, unsupported, more than opts.max_pixels)
 * returns -1 with st_error_set("<name>: <problem>"); the process never exits or crashes: both
 * libraries' fatal errors are caught with setjmp/longjmp. `name` only labels messages.
 *
 * Thread-safe: no shared state; the data loader calls these from its worker threads.
 */
#ifndef ST_IMAGE_H
#define ST_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_image {
    uint8_t *px; /* (h, w, 3) RGB, owned; free with st_image_free */
    int w, h;
} st_image;

typedef struct st_decode_opts {
    int64_t max_pixels;     /* reject images with w*h above this (before decoding pixels) */
    int min_short_side;     /* JPEG DCT scaling target (pixels); 0 = always decode full size */
    uint8_t background[3];  /* RGB that alpha is composited on */
} st_decode_opts;

enum { ST_DEFAULT_MAX_MEGAPIXELS = 100 };

/* Defaults: 100 megapixels, no DCT scaling, white background. */
st_decode_opts st_decode_opts_default(void);

/* Decode an in-memory JPEG or PNG (detected from the signature bytes). 0 on success, else -1
 * with st_error_set. On failure *out is left empty ({NULL, 0, 0}). */
int st_image_decode_mem(const uint8_t *data, size_t size, const char *name, const st_decode_opts *opts,
                        st_image *out);

/* Read `path` and decode it; messages name the path. */
int st_image_decode_file(const char *path, const st_decode_opts *opts, st_image *out);

/* Parse the EXIF orientation (1..8) out of an APP1 payload that starts with "Exif\0\0".
 * Returns 1 (upright) when absent or malformed. Never reads outside [payload, payload+size). */
int st_exif_orientation(const uint8_t *payload, size_t size);

/* Apply EXIF orientation 1..8 to an image in place (reallocates px for the transposing ones). */
void st_image_orient(st_image *img, int orientation);

void st_image_free(st_image *img);

/* Read a whole regular file (at most ST_MAX_FILE_BYTES) into a malloc'd buffer; -1 with
 * st_error_set on failure (missing, unreadable, a directory or device, too large). */
#define ST_MAX_FILE_BYTES ((uint64_t)1 << 30)
int st_read_file(const char *path, uint8_t **data, size_t *size);

#endif
