/*
 * make_synthetic.c: write a generated image dataset (data/synthetic.h) from the command line, for
 * script tests that need real image folders (tests/sweep_e2e.py, and any other test).
 *
 *   make_synthetic OUT_DIR N_CLASSES IMAGES_PER_CLASS [WIDTH HEIGHT SEED FIRST_CLASS FIRST_IMAGE]
 *
 * Writes OUT_DIR/device_<id>/<index>.png|jpg (folders created); defaults 64 64 0 0 0. The output
 * is a pure function of the arguments (st_synth_write_dataset), so tests can regenerate it at
 * will. Exit 0 on success, 1 when writing fails (message names the file), 2 on bad usage.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/synthetic.h"
#include "kernels/check.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: make_synthetic OUT_DIR N_CLASSES IMAGES_PER_CLASS [WIDTH HEIGHT SEED FIRST_CLASS FIRST_IMAGE]\n"
            "  writes OUT_DIR/device_<id>/<index>.png|jpg, a deterministic synthetic dataset (data/synthetic.h)\n"
            "  N_CLASSES, IMAGES_PER_CLASS  >= 1\n"
            "  WIDTH HEIGHT                 image size in pixels, 8..4096 (default 64 64)\n"
            "  SEED                         dataset seed, >= 0 (default 0)\n"
            "  FIRST_CLASS FIRST_IMAGE      first class id and first image index, >= 0 (default 0 0):\n"
            "                               disjoint ranges give new devices / new images of the same devices\n");
}

/* Parse a whole decimal integer in [lo, hi] into *out; 0 or -1 (message printed, naming `what`). */
static int parse_int(const char *text, const char *what, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "make_synthetic: %s: expected an integer in [%lld, %lld], got '%s'\n", what, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 4 && argc != 9) {
        fprintf(stderr, "make_synthetic: expected 3 or 8 arguments, got %d\n", argc - 1);
        usage(stderr);
        return 2;
    }
    long long n_classes, per_class, width = 64, height = 64, seed = 0, first_class = 0, first_image = 0;
    int bad = parse_int(argv[2], "N_CLASSES", 1, 100000, &n_classes) ||
              parse_int(argv[3], "IMAGES_PER_CLASS", 1, 100000, &per_class);
    if (!bad && argc == 9)
        bad = parse_int(argv[4], "WIDTH", 8, 4096, &width) || parse_int(argv[5], "HEIGHT", 8, 4096, &height) ||
              parse_int(argv[6], "SEED", 0, LLONG_MAX, &seed) ||
              parse_int(argv[7], "FIRST_CLASS", 0, INT_MAX - n_classes, &first_class) ||
              parse_int(argv[8], "FIRST_IMAGE", 0, INT_MAX - per_class, &first_image);
    if (bad) {
        usage(stderr);
        return 2;
    }
    st_synth_config cfg = {
        .n_classes = (int)n_classes,
        .first_class = (int)first_class,
        .first_image = (int)first_image,
        .images_per_class = (int)per_class,
        .width = (int)width,
        .height = (int)height,
        .jpeg_fraction = 0.25, /* a mix, so readers of the folder exercise both decoders */
        .seed = (uint64_t)seed,
    };
    if (st_synth_write_dataset(argv[1], &cfg, NULL)) {
        fprintf(stderr, "make_synthetic: %s\n", st_error_get());
        return 1;
    }
    printf("make_synthetic: wrote %d classes x %d images of %dx%d to %s\n", cfg.n_classes, cfg.images_per_class,
           cfg.width, cfg.height, argv[1]);
    return 0;
}
