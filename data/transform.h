/*
 * transform.h: decoded RGB image -> preprocessed float NHWC sample, as torchvision does it.
 *
 * Geometry (one of):
 *   ST_GEOM_RESIZE_CROP   evaluation: shorter side -> resize_short (torchvision Resize(int)),
 *                         then a centre crop of out_h x out_w (CenterCrop, Python rounding)
 *   ST_GEOM_RESIZE_EXACT  evaluation: resize to exactly out_h x out_w (aspect not kept)
 *   ST_GEOM_RANDOM_CROP   training: RandomResizedCrop(scale, ratio) with torchvision's sampling
 *                         (10 tries, then the centre fallback), then horizontal flip with
 *                         probability hflip_prob and optional colour jitter
 * An image already at out_h x out_w is never resampled by the evaluation geometries: its pixels
 * are used as they are (so embeddings of input-size images equal Keras' on the same pixels).
 * Resampling is PIL's BILINEAR filter with antialiasing (a triangle whose support widens by the
 * downscale factor; torchvision antialias=True); it is computed only over the output window, in
 * float, without PIL's intermediate uint8 rounding.
 *
 * Colour jitter (torchvision ColorJitter semantics, factors drawn uniformly from
 * [max(0, 1 - s), 1 + s], applied in a random order, each result clamped to [0, 255]):
 * brightness scales, contrast blends with the mean grey of the image, saturation with each
 * pixel's grey (ITU-R 601 luma 0.299, 0.587, 0.114).
 *
 * Preprocessing (the Keras ResNet conventions, see ../shared/docs/resnet-weights-hdf5.md):
 *   caffe: RGB -> BGR, subtract [103.939, 116.779, 123.68] (BGR order), scale 0..255
 *   tf:    x / 127.5 - 1
 *   torch: (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
 *
 * Output: float (out_h, out_w, 3), caller-owned. All randomness comes from the caller's st_rng,
 * so a sample's augmentation is a pure function of (image, transform, rng state). Thread-safe.
 */
#ifndef ST_TRANSFORM_H
#define ST_TRANSFORM_H

#include "data/image.h"
#include "data/base/rng.h"

typedef enum { ST_PREPROCESS_CAFFE, ST_PREPROCESS_TF, ST_PREPROCESS_TORCH } st_preprocess;

typedef enum { ST_GEOM_RESIZE_CROP, ST_GEOM_RESIZE_EXACT, ST_GEOM_RANDOM_CROP } st_geometry;

typedef struct st_transform {
    st_geometry geometry;
    int out_h, out_w;
    int resize_short;             /* RESIZE_CROP: shorter side before the crop, >= out_h, out_w */
    double scale_min, scale_max;  /* RANDOM_CROP: area fraction, torchvision (0.08, 1.0) */
    double ratio_min, ratio_max;  /* RANDOM_CROP: aspect w/h, torchvision (3/4, 4/3) */
    double hflip_prob;            /* probability of a horizontal flip (training) */
    double brightness, contrast, saturation; /* jitter strengths; 0 = off */
    st_preprocess preprocess;
} st_transform;

/* Evaluation: resize shorter side to resize_short, centre crop size x size. */
st_transform st_transform_eval(int size, int resize_short, st_preprocess preprocess);
/* Training: RandomResizedCrop(size, (0.08, 1), (3/4, 4/3)) + flip 0.5, no jitter. */
st_transform st_transform_train(int size, st_preprocess preprocess);

/* -1 with st_error_set when a field is out of range (`what` names the config in messages). */
int st_transform_validate(const st_transform *t, const char *what);

/* The JPEG DCT-scaling target for st_decode_opts.min_short_side: a decoded image at least this
 * short side is never upsampled by the transform (for random crops: of scale_min area). */
int st_transform_min_decode_side(const st_transform *t);

/* img -> out (out_h, out_w, 3) float, preprocessed. rng is drawn from only by RANDOM_CROP,
 * flips and jitter; it may be NULL for a deterministic (evaluation) transform. */
void st_transform_apply(const st_transform *t, const st_image *img, st_rng *rng, float *out);

/* Antialiased bilinear resampling, PIL Image.resize(BILINEAR, box) semantics: source box
 * [x0, x1) x [y0, y1) in pixel units onto out_w x out_h; filter taps are clipped to
 * [clip_x0, clip_x1) x [clip_y0, clip_y1) (the whole image, or the box for crop-then-resize).
 * out: (out_h, out_w, 3) float RGB in 0..255. */
typedef struct st_resample_box {
    double x0, y0, x1, y1;
    int clip_x0, clip_y0, clip_x1, clip_y1;
} st_resample_box;
void st_resample(const st_image *img, const st_resample_box *box, int out_w, int out_h, float *out);

/* In place on (n_pixels, 3) RGB floats in 0..255. */
void st_preprocess_apply(st_preprocess mode, float *px, size_t n_pixels);

/* "caffe" | "tf" | "torch" -> mode; -1 with st_error_set otherwise. */
int st_preprocess_parse(const char *name, st_preprocess *mode);
const char *st_preprocess_name(st_preprocess mode);

#endif
