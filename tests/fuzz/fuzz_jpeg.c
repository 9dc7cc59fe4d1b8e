/*
 * fuzz_jpeg.c: libFuzzer harness for the JPEG path of data/decode.c (libjpeg-turbo behind our
 * setjmp error manager, EXIF parsing, orientation, DCT scaling, CMYK). Built by build.sh.
 * The last input byte picks the DCT-scaling target so every scale gets exercised; the pixel
 * limit is 4 megapixels so a forged header cannot make the fuzzer run out of memory.
 */
#include <stdint.h>
#include <stdlib.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_decode_opts opts = st_decode_opts_default();
    opts.max_pixels = 4 * 1000 * 1000;
    opts.min_short_side = size ? data[size - 1] % 96 : 0;
    st_image img;
    if (st_image_decode_mem(data, size, "fuzz.jpg", &opts, &img) == 0) {
        if (img.w < 1 || img.h < 1 || !img.px) abort(); /* success must mean a real image */
        st_image_free(&img);
    }
    st_exif_orientation(data, size); /* the raw input as an APP1 payload too */
    return 0;
}
