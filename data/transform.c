/*
 * transform.c: resampling, crops, flips, colour jitter and preprocessing; contract in
 * transform.h. The resampler is separable: per output column/row a list of filter taps
 * (first source index, count, normalised weights), a horizontal pass over only the source rows
 * the vertical taps touch, then the vertical pass.
 */
#include "data/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/check.h"
#include "data/base/text.h"

st_transform st_transform_eval(int size, int resize_short, st_preprocess preprocess) {
    st_transform t;
    memset(&t, 0, sizeof t);
    t.geometry = ST_GEOM_RESIZE_CROP;
    t.out_h = t.out_w = size;
    t.resize_short = resize_short;
    t.scale_min = 0.08;
    t.scale_max = 1.0;
    t.ratio_min = 3.0 / 4.0;
    t.ratio_max = 4.0 / 3.0;
    t.preprocess = preprocess;
    return t;
}

st_transform st_transform_train(int size, st_preprocess preprocess) {
    st_transform t = st_transform_eval(size, size, preprocess);
    t.geometry = ST_GEOM_RANDOM_CROP;
    t.hflip_prob = 0.5;
    return t;
}

int st_transform_validate(const st_transform *t, const char *what) {
    if (t->out_h < 1 || t->out_w < 1 || t->out_h > 8192 || t->out_w > 8192)
        return st_error_set("%s: output size %d x %d is outside 1..8192", what, t->out_h, t->out_w);
    if (t->geometry == ST_GEOM_RESIZE_CROP && (t->resize_short < t->out_h || t->resize_short < t->out_w))
        return st_error_set("%s: resize %d is smaller than the crop %d x %d (HINT: resize >= crop)", what,
                            t->resize_short, t->out_h, t->out_w);
    if (t->geometry == ST_GEOM_RANDOM_CROP) {
        if (!(t->scale_min > 0 && t->scale_min <= t->scale_max && t->scale_max <= 1))
            return st_error_set("%s: crop scale range [%g, %g] must satisfy 0 < min <= max <= 1", what,
                                t->scale_min, t->scale_max);
        if (!(t->ratio_min > 0 && t->ratio_min <= t->ratio_max))
            return st_error_set("%s: crop ratio range [%g, %g] must satisfy 0 < min <= max", what,
                                t->ratio_min, t->ratio_max);
    }
    if (!(t->hflip_prob >= 0 && t->hflip_prob <= 1))
        return st_error_set("%s: flip probability %g is outside [0, 1]", what, t->hflip_prob);
    if (!(t->brightness >= 0 && t->contrast >= 0 && t->saturation >= 0))
        return st_error_set("%s: colour jitter strengths must be >= 0", what);
    return 0;
}

int st_transform_min_decode_side(const st_transform *t) {
    int longest_out = t->out_h > t->out_w ? t->out_h : t->out_w;
    switch (t->geometry) {
    case ST_GEOM_RESIZE_CROP: return t->resize_short;
    case ST_GEOM_RESIZE_EXACT: return longest_out;
    default: return (int)ceil(longest_out / sqrt(t->scale_min));
    }
}

/* ---- resampling ------------------------------------------------------------------------- */

typedef struct filter_taps {
    int *first;   /* (n_out) first source index */
    int *count;   /* (n_out) taps used */
    float *weight; /* (n_out, max_taps) normalised weights */
    int max_taps;
} filter_taps;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* PIL's precompute_coeffs for the bilinear filter: output i samples the source around
 * centre = box0 + (i + 0.5) * scale with a triangle of half-width max(scale, 1). */
static void taps_compute(filter_taps *taps, double box0, double box1, int clip0, int clip1, int n_out) {
    const double scale = (box1 - box0) / n_out;
    const double filter_scale = scale > 1.0 ? scale : 1.0;
    const double support = 1.0 * filter_scale;
    taps->max_taps = (int)ceil(support) * 2 + 1;
    taps->first = ST_MALLOC((size_t)n_out * sizeof(int));
    taps->count = ST_MALLOC((size_t)n_out * sizeof(int));
    taps->weight = ST_CALLOC((size_t)n_out * taps->max_taps, sizeof(float));
    double *w = ST_MALLOC((size_t)taps->max_taps * sizeof(double));
    for (int i = 0; i < n_out; i++) {
        const double centre = box0 + (i + 0.5) * scale;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        if (lo < clip0) lo = clip0;
        if (hi > clip1) hi = clip1;
        if (hi - lo > taps->max_taps) hi = lo + taps->max_taps;
        double total = 0;
        for (int j = lo; j < hi; j++) total += w[j - lo] = triangle((j - centre + 0.5) / filter_scale);
        if (total <= 0) { /* centre outside the clip window: take the nearest pixel */
            lo = centre < clip0 ? clip0 : clip1 - 1;
            hi = lo + 1;
            w[0] = total = 1;
        }
        taps->first[i] = lo;
        taps->count[i] = hi - lo;
        for (int j = 0; j < hi - lo; j++) taps->weight[(size_t)i * taps->max_taps + j] = (float)(w[j] / total);
    }
    free(w);
}

static void taps_free(filter_taps *taps) {
    free(taps->first);
    free(taps->count);
    free(taps->weight);
}

void st_resample(const st_image *img, const st_resample_box *box, int out_w, int out_h, float *out) {
    filter_taps tx, ty;
    taps_compute(&tx, box->x0, box->x1, box->clip_x0, box->clip_x1, out_w);
    taps_compute(&ty, box->y0, box->y1, box->clip_y0, box->clip_y1, out_h);
    const int row_lo = ty.first[0], row_hi = ty.first[out_h - 1] + ty.count[out_h - 1];
    float *rows = ST_MALLOC((size_t)(row_hi - row_lo) * out_w * 3 * sizeof(float)); /* (rows, out_w, 3) */
    for (int y = row_lo; y < row_hi; y++) {
        const uint8_t *src = img->px + (size_t)y * img->w * 3;
        float *dst = rows + (size_t)(y - row_lo) * out_w * 3;
        for (int x = 0; x < out_w; x++) {
            const float *w = tx.weight + (size_t)x * tx.max_taps;
            const uint8_t *s = src + (size_t)tx.first[x] * 3;
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < tx.count[x]; k++) {
                r += w[k] * s[3 * k];
                g += w[k] * s[3 * k + 1];
                b += w[k] * s[3 * k + 2];
            }
            dst[3 * x] = r;
            dst[3 * x + 1] = g;
            dst[3 * x + 2] = b;
        }
    }
    const size_t row_floats = (size_t)out_w * 3;
    for (int y = 0; y < out_h; y++) {
        float *dst = out + (size_t)y * row_floats;
        const float *w = ty.weight + (size_t)y * ty.max_taps;
        const float *src = rows + (size_t)(ty.first[y] - row_lo) * row_floats;
        for (size_t i = 0; i < row_floats; i++) dst[i] = w[0] * src[i];
        for (int k = 1; k < ty.count[y]; k++)
            for (size_t i = 0; i < row_floats; i++) dst[i] += w[k] * src[(size_t)k * row_floats + i];
    }
    free(rows);
    taps_free(&tx);
    taps_free(&ty);
}

/* ---- geometry --------------------------------------------------------------------------- */

static st_resample_box whole_image_box(const st_image *img, double x0, double y0, double x1, double y1) {
    st_resample_box b = {x0, y0, x1, y1, 0, 0, img->w, img->h};
    return b;
}

/* torchvision Resize(int) + CenterCrop: the resized image is never built, only its window. */
static void resize_centre_crop(const st_transform *t, const st_image *img, float *out) {
    int new_w, new_h;
    if (img->w <= img->h) {
        new_w = t->resize_short;
        new_h = (int)((double)t->resize_short * img->h / img->w);
    } else {
        new_h = t->resize_short;
        new_w = (int)((double)t->resize_short * img->w / img->h);
    }
    /* Python's round() is round-half-even; rint() in the default rounding mode is too. */
    const int top = (int)rint((new_h - t->out_h) / 2.0), left = (int)rint((new_w - t->out_w) / 2.0);
    const double sx = (double)img->w / new_w, sy = (double)img->h / new_h;
    st_resample_box b = whole_image_box(img, left * sx, top * sy, (left + t->out_w) * sx, (top + t->out_h) * sy);
    st_resample(img, &b, t->out_w, t->out_h, out);
}

/* torchvision RandomResizedCrop.get_params: (top, left, height, width) of the crop. */
static void random_crop_window(const st_transform *t, const st_image *img, st_rng *rng, int window[4]) {
    const double area = (double)img->w * img->h;
    const double log_r0 = log(t->ratio_min), log_r1 = log(t->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * (t->scale_min + (t->scale_max - t->scale_min) * st_rng_uniform(rng));
        double aspect = exp(log_r0 + (log_r1 - log_r0) * st_rng_uniform(rng));
        int w = (int)rint(sqrt(target_area * aspect)), h = (int)rint(sqrt(target_area / aspect));
        if (w > 0 && h > 0 && w <= img->w && h <= img->h) {
            window[0] = (int)st_rng_below(rng, (uint64_t)(img->h - h + 1));
            window[1] = (int)st_rng_below(rng, (uint64_t)(img->w - w + 1));
            window[2] = h;
            window[3] = w;
            return;
        }
    }
    const double in_ratio = (double)img->w / img->h;
    int w = img->w, h = img->h;
    if (in_ratio < t->ratio_min) h = (int)rint(w / t->ratio_min);
    else if (in_ratio > t->ratio_max) w = (int)rint(h * t->ratio_max);
    window[0] = (img->h - h) / 2;
    window[1] = (img->w - w) / 2;
    window[2] = h;
    window[3] = w;
}

static void flip_horizontal(float *px, int w, int h) {
    for (int y = 0; y < h; y++) {
        float *row = px + (size_t)y * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                float tmp = row[3 * a + c];
                row[3 * a + c] = row[3 * b + c];
                row[3 * b + c] = tmp;
            }
    }
}

/* ---- colour jitter ---------------------------------------------------------------------- */

static float clamp255(float v) { return v < 0 ? 0 : v > 255 ? 255 : v; }
static float luma(const float *p) { return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }

static double jitter_factor(st_rng *rng, double strength) {
    double lo = 1 - strength > 0 ? 1 - strength : 0;
    return lo + (1 + strength - lo) * st_rng_uniform(rng);
}

static void adjust_brightness(float *px, size_t n, float f) {
    for (size_t i = 0; i < 3 * n; i++) px[i] = clamp255(px[i] * f);
}

static void adjust_contrast(float *px, size_t n, float f) {
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += luma(px + 3 * i);
    const float m = (float)(mean / (double)n);
    for (size_t i = 0; i < 3 * n; i++) px[i] = clamp255(m + f * (px[i] - m));
}

static void adjust_saturation(float *px, size_t n, float f) {
    for (size_t i = 0; i < n; i++) {
        float *p = px + 3 * i;
        const float grey = luma(p);
        for (int c = 0; c < 3; c++) p[c] = clamp255(grey + f * (p[c] - grey));
    }
}

static void colour_jitter(const st_transform *t, float *px, size_t n, st_rng *rng) {
    int order[3] = {0, 1, 2};
    for (int i = 2; i > 0; i--) { /* Fisher-Yates: torchvision applies them in a random order */
        int j = (int)st_rng_below(rng, (uint64_t)i + 1);
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (int i = 0; i < 3; i++) {
        if (order[i] == 0 && t->brightness > 0) adjust_brightness(px, n, (float)jitter_factor(rng, t->brightness));
        if (order[i] == 1 && t->contrast > 0) adjust_contrast(px, n, (float)jitter_factor(rng, t->contrast));
        if (order[i] == 2 && t->saturation > 0) adjust_saturation(px, n, (float)jitter_factor(rng, t->saturation));
    }
}

/* ---- preprocessing ---------------------------------------------------------------------- */

void st_preprocess_apply(st_preprocess mode, float *px, size_t n_pixels) {
    static const float caffe_mean_bgr[3] = {103.939f, 116.779f, 123.68f};
    static const float torch_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float torch_std[3] = {0.229f, 0.224f, 0.225f};
    for (size_t i = 0; i < n_pixels; i++) {
        float *p = px + 3 * i;
        if (mode == ST_PREPROCESS_CAFFE) {
            const float r = p[0], b = p[2];
            p[0] = b - caffe_mean_bgr[0];
            p[1] = p[1] - caffe_mean_bgr[1];
            p[2] = r - caffe_mean_bgr[2];
        } else if (mode == ST_PREPROCESS_TF) {
            for (int c = 0; c < 3; c++) p[c] = p[c] / 127.5f - 1.0f;
        } else {
            for (int c = 0; c < 3; c++) p[c] = (p[c] / 255.0f - torch_mean[c]) / torch_std[c];
        }
    }
}

static const char *const preprocess_names[] = {"caffe", "tf", "torch", NULL}; /* index = st_preprocess */

int st_preprocess_parse(const char *name, st_preprocess *mode) {
    int i = st_name_index(preprocess_names, name);
    char choices[64];
    if (i < 0)
        return st_error_set("preprocessing '%s' is not one of %s", name, st_names_join(preprocess_names, choices, sizeof choices));
    *mode = (st_preprocess)i;
    return 0;
}

const char *st_preprocess_name(st_preprocess mode) { return preprocess_names[mode]; }

/* ---- the whole transform ---------------------------------------------------------------- */

void st_transform_apply(const st_transform *t, const st_image *img, st_rng *rng, float *out) {
    const size_t n = (size_t)t->out_h * t->out_w;
    const int jitter = t->brightness > 0 || t->contrast > 0 || t->saturation > 0;
    ST_CHECK(rng || (t->geometry != ST_GEOM_RANDOM_CROP && t->hflip_prob == 0 && !jitter),
             "st_transform_apply: a random transform needs an RNG");
    if (t->geometry != ST_GEOM_RANDOM_CROP && img->w == t->out_w && img->h == t->out_h) {
        /* already at the input size: evaluation never resamples it */
        for (size_t i = 0; i < 3 * n; i++) out[i] = (float)img->px[i];
    } else if (t->geometry == ST_GEOM_RESIZE_CROP) {
        resize_centre_crop(t, img, out);
    } else if (t->geometry == ST_GEOM_RESIZE_EXACT) {
        st_resample_box b = whole_image_box(img, 0, 0, img->w, img->h);
        st_resample(img, &b, t->out_w, t->out_h, out);
    } else {
        int win[4]; /* top, left, height, width */
        random_crop_window(t, img, rng, win);
        st_resample_box b = {win[1], win[0], win[1] + win[3], win[0] + win[2],
                             win[1], win[0], win[1] + win[3], win[0] + win[2]};
        st_resample(img, &b, t->out_w, t->out_h, out);
    }
    if (t->hflip_prob > 0 && st_rng_uniform(rng) < t->hflip_prob) flip_horizontal(out, t->out_w, t->out_h);
    if (jitter) colour_jitter(t, out, n, rng);
    st_preprocess_apply(t->preprocess, out, n);
}
