/*
 * encode.h: write 8-bit RGB images (data/image.h's st_image) as PNG (libpng) or JPEG
 * (libjpeg-turbo), atomically (path.tmp, fsync, rename). Used to materialise generated datasets
 * (data/synthetic.h) and thumbnails; the decoders in data/decode.c read them back.
 */
#ifndef ST_ENCODE_H
#define ST_ENCODE_H

#include "data/image.h"

/* 0, or -1 with st_error_set naming the path. quality 1..100 for JPEG. */
int st_image_write_png(const char *path, const st_image *img);
int st_image_write_jpeg(const char *path, const st_image *img, int quality);

#endif
