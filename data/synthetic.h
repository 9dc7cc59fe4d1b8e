/*
 * synthetic.h: a deterministic procedural image dataset that resembles what simtune is for:
 * photos of industrial devices, line drawings of them (manual pages) and close-ups of their
 * screen panels.
 *
 * Each class is a device template drawn from (seed, class id): a body of some shape and colour,
 * a screen with UI bars, knobs, a button grid, a logo and a stripe. Each image renders the
 * template under a random pose (shift, scale, small rotation) in one of three styles:
 *   photo    filled colours, shading, cluttered background, sensor noise       (~60%)
 *   drawing  dark outlines on paper, no colour, like a manual page            (~25%)
 *   screen   a close-up of the screen panel and its surroundings              (~15%)
 * Rendering evaluates signed distances per pixel, antialiased over one pixel. Everything is a
 * pure function of (seed, class id, image index, size), so the same call gives the same bytes.
 *
 * Callers: `simtune demo` (cmd/demo.c) and tests that need real image files.
 */
#ifndef ST_SYNTHETIC_H
#define ST_SYNTHETIC_H

#include <stdint.h>
#include <stdio.h>

#include "data/image.h"

typedef struct st_synth_config {
    int n_classes;          /* classes written, ids first_class .. first_class + n_classes - 1 */
    int first_class;        /* disjoint ranges give disjoint device families */
    int first_image;        /* image indices first_image .. first_image + images_per_class - 1:
                             * disjoint ranges give new images of the same devices */
    int images_per_class;
    int width, height;      /* image size in pixels */
    double jpeg_fraction;   /* share of images written as JPEG (the rest PNG), [0, 1] */
    uint64_t seed;
} st_synth_config;

/* Render image `index` of class `class_id`: out gets a fresh (height, width) RGB image. */
void st_synth_render(uint64_t seed, int class_id, int index, int width, int height, st_image *out);

/* Write root/device_<id>/<index>.png|jpg for every class and image (folders created). Progress
 * (one line per class) goes to `progress` when not NULL. 0, or -1 with st_error_set. */
int st_synth_write_dataset(const char *root, const st_synth_config *cfg, FILE *progress);

#endif
