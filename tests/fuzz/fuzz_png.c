/*
 * fuzz_png.c: libFuzzer harness for the PNG path of data/decode.c (libpng behind our
 * setjmp error handler, every colour type/bit depth, tRNS, interlacing, alpha compositing).
 * Built by build.sh. Pixel limit 4 megapixels so forged headers cannot exhaust memory.
 */
#include <stdint.h>
#include <stdlib.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_decode_opts opts = st_decode_opts_default();
    opts.max_pixels = 4 * 1000 * 1000;
    st_image img;
    if (st_image_decode_mem(data, size, "fuzz.png", &opts, &img) == 0) {
        if (img.w < 1 || img.h < 1 || !img.px) abort(); /* success must mean a real image */
        st_image_free(&img);
    }
    return 0;
}
