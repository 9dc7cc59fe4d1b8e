/*
 * synthetic.c: procedural device images (data/synthetic.h). A template is a short list of
 * primitives in template space [0,1]^2; a pose maps image pixels back into that space; each
 * pixel takes the colour of the top-most primitive covering it (photo, screen) or ink near any
 * primitive's outline (drawing).
 */
#include "data/synthetic.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/encode.h"
#include "data/base/fileio.h"
#include "data/base/rng.h"
#include "kernels/check.h"

enum { MAX_PRIMS = 32 };
typedef enum { PRIM_RECT, PRIM_CIRCLE } prim_kind;

typedef struct prim {
    prim_kind kind;
    float cx, cy;      /* centre */
    float hx, hy;      /* rect half sizes; circle radius in hx */
    float round;       /* rect corner radius */
    float rgb[3];
} prim;

typedef struct device {
    prim prims[MAX_PRIMS];
    int n;
    float screen[4];   /* screen rect x0, y0, x1, y1: the close-up target */
} device;

typedef enum { STYLE_PHOTO, STYLE_DRAWING, STYLE_SCREEN } style;

static float uniform(st_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)st_rng_uniform(r); }

static void random_colour(st_rng *r, float rgb[3], float lo, float hi) {
    for (int c = 0; c < 3; c++) rgb[c] = uniform(r, lo, hi);
}

static prim *add(device *d, prim_kind kind, float cx, float cy, float hx, float hy) {
    ST_CHECK(d->n < MAX_PRIMS, "synthetic device has too many primitives");
    prim *p = &d->prims[d->n++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->cx = cx;
    p->cy = cy;
    p->hx = hx;
    p->hy = hy;
    return p;
}

/* The device template of a class: body, stripe, screen with UI bars, button grid, knobs, logo. */
static void make_device(uint64_t seed, int class_id, device *d) {
    st_rng r;
    st_rng_derive(&r, seed, 0x5e71ce, (uint64_t)class_id);
    memset(d, 0, sizeof *d);
    float bw = uniform(&r, 0.28f, 0.42f), bh = uniform(&r, 0.22f, 0.40f);
    prim *body = add(d, PRIM_RECT, 0.5f, 0.5f, bw, bh);
    body->round = uniform(&r, 0.0f, 0.08f);
    random_colour(&r, body->rgb, 0.25f, 0.9f);
    prim *stripe = add(d, PRIM_RECT, 0.5f, 0.5f - bh + 0.04f, bw, uniform(&r, 0.015f, 0.04f));
    random_colour(&r, stripe->rgb, 0.1f, 0.95f);

    float sw = bw * uniform(&r, 0.35f, 0.6f), sh = bh * uniform(&r, 0.3f, 0.5f);
    float sx = 0.5f - bw + sw + 0.03f + uniform(&r, 0.0f, bw - sw), sy = 0.5f - bh + sh + 0.08f;
    prim *screen = add(d, PRIM_RECT, sx, sy, sw, sh);
    random_colour(&r, screen->rgb, 0.02f, 0.2f);
    d->screen[0] = sx - sw, d->screen[1] = sy - sh, d->screen[2] = sx + sw, d->screen[3] = sy + sh;
    float bar_rgb[3];
    random_colour(&r, bar_rgb, 0.5f, 1.0f);
    int bars = 2 + (int)st_rng_below(&r, 4);
    for (int i = 0; i < bars; i++) {
        float len = sw * uniform(&r, 0.3f, 0.9f);
        float y = sy - sh + (2.0f * sh) * (i + 1) / (bars + 1);
        prim *b = add(d, PRIM_RECT, sx - sw + 0.02f + len, y, len - 0.01f, sh / (bars * 3.0f));
        memcpy(b->rgb, bar_rgb, sizeof bar_rgb);
    }
    int rows = 1 + (int)st_rng_below(&r, 3), cols = 2 + (int)st_rng_below(&r, 4);
    float button_rgb[3];
    random_colour(&r, button_rgb, 0.05f, 0.95f);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float cx = 0.5f - bw + 0.06f + j * (bw * 1.2f / cols);
            float cy = 0.5f + bh - 0.06f - i * 0.07f;
            prim *b = add(d, PRIM_RECT, cx, cy, 0.022f, 0.018f);
            b->round = 0.005f;
            memcpy(b->rgb, button_rgb, sizeof button_rgb);
        }
    int knobs = (int)st_rng_below(&r, 4);
    for (int i = 0; i < knobs; i++) {
        prim *k = add(d, PRIM_CIRCLE, 0.5f + bw - 0.07f, 0.5f - bh + 0.1f + i * 0.12f, uniform(&r, 0.025f, 0.05f), 0);
        random_colour(&r, k->rgb, 0.0f, 0.6f);
    }
    prim *logo = add(d, st_rng_below(&r, 2) ? PRIM_CIRCLE : PRIM_RECT, 0.5f + bw * 0.5f, 0.5f + bh * 0.2f,
                     uniform(&r, 0.02f, 0.05f), uniform(&r, 0.02f, 0.05f));
    random_colour(&r, logo->rgb, 0.0f, 1.0f);
}

/* Signed distance (negative inside) of a point to a primitive, in template units. */
static float sdf(const prim *p, float u, float v) {
    float dx = fabsf(u - p->cx), dy = fabsf(v - p->cy);
    if (p->kind == PRIM_CIRCLE) return sqrtf(dx * dx + dy * dy) - p->hx;
    float qx = dx - p->hx + p->round, qy = dy - p->hy + p->round;
    float ox = fmaxf(qx, 0.0f), oy = fmaxf(qy, 0.0f);
    return sqrtf(ox * ox + oy * oy) + fminf(fmaxf(qx, qy), 0.0f) - p->round;
}

static float coverage(float dist, float pixel) { return fminf(fmaxf(0.5f - dist / pixel, 0.0f), 1.0f); }

typedef struct pose {
    float cu, cv;      /* template point at the image centre */
    float scale;       /* template units per pixel */
    float cos_t, sin_t;
} pose;

static void shade_pixel(const device *d, style st, float u, float v, float pixel, const float bg[3], float out[3]) {
    memcpy(out, bg, 3 * sizeof(float));
    if (st == STYLE_DRAWING) {
        float ink = 0.0f;
        for (int i = 0; i < d->n; i++) ink = fmaxf(ink, coverage(fabsf(sdf(&d->prims[i], u, v)) - pixel * 0.6f, pixel));
        for (int c = 0; c < 3; c++) out[c] = out[c] * (1.0f - ink) + 0.08f * ink;
        return;
    }
    for (int i = 0; i < d->n; i++) {
        float a = coverage(sdf(&d->prims[i], u, v), pixel);
        if (a <= 0.0f) continue;
        const float *rgb = d->prims[i].rgb;
        float shade = i == 0 ? 1.0f - 0.35f * (v - 0.3f) : 1.0f; /* light from above on the body */
        for (int c = 0; c < 3; c++) out[c] = out[c] * (1.0f - a) + fminf(rgb[c] * shade, 1.0f) * a;
    }
}

static void background(st_rng *r, style st, int x, int y, int w, int h, const float base[3], float out[3]) {
    if (st == STYLE_DRAWING) {
        out[0] = out[1] = out[2] = 0.97f;
        return;
    }
    float g = 0.8f + 0.4f * (float)x / (float)w - 0.2f * (float)y / (float)h;
    for (int c = 0; c < 3; c++) out[c] = base[c] * g;
    (void)r;
}

void st_synth_render(uint64_t seed, int class_id, int index, int width, int height, st_image *out) {
    device d;
    make_device(seed, class_id, &d);
    st_rng r;
    st_rng_derive(&r, seed, (uint64_t)class_id + 1, (uint64_t)index);
    double pick = st_rng_uniform(&r);
    style st = pick < 0.6 ? STYLE_PHOTO : pick < 0.85 ? STYLE_DRAWING : STYLE_SCREEN;
    pose p;
    float theta = uniform(&r, -0.25f, 0.25f);
    p.cos_t = cosf(theta);
    p.sin_t = sinf(theta);
    float side = (float)(width < height ? width : height);
    if (st == STYLE_SCREEN) {
        p.cu = 0.5f * (d.screen[0] + d.screen[2]) + uniform(&r, -0.03f, 0.03f);
        p.cv = 0.5f * (d.screen[1] + d.screen[3]) + uniform(&r, -0.03f, 0.03f);
        p.scale = (d.screen[2] - d.screen[0]) * uniform(&r, 1.3f, 1.8f) / side;
    } else {
        p.cu = 0.5f + uniform(&r, -0.08f, 0.08f);
        p.cv = 0.5f + uniform(&r, -0.08f, 0.08f);
        p.scale = uniform(&r, 0.9f, 1.3f) / side;
    }
    float bg[3], light = uniform(&r, 0.7f, 1.15f), noise = st == STYLE_DRAWING ? 0.01f : 0.04f;
    random_colour(&r, bg, 0.2f, 0.8f);
    out->w = width;
    out->h = height;
    out->px = ST_MALLOC((size_t)width * height * 3);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            float dx = x + 0.5f - 0.5f * width, dy = y + 0.5f - 0.5f * height;
            float u = p.cu + p.scale * (p.cos_t * dx - p.sin_t * dy);
            float v = p.cv + p.scale * (p.sin_t * dx + p.cos_t * dy);
            float base[3], rgb[3];
            background(&r, st, x, y, width, height, bg, base);
            shade_pixel(&d, st, u, v, p.scale, base, rgb);
            for (int c = 0; c < 3; c++) {
                float value = rgb[c] * (st == STYLE_DRAWING ? 1.0f : light) + noise * (float)(st_rng_uniform(&r) - 0.5) * 2.0f;
                float clamped = fminf(fmaxf(value, 0.0f), 1.0f);
                out->px[((size_t)y * width + x) * 3 + c] = (uint8_t)lrintf(clamped * 255.0f);
            }
        }
}

int st_synth_write_dataset(const char *root, const st_synth_config *cfg, FILE *progress) {
    if (cfg->n_classes < 1 || cfg->images_per_class < 1 || cfg->width < 8 || cfg->height < 8)
        return st_error_set("synthetic dataset: need >= 1 class, >= 1 image per class and sides >= 8");
    if (st_mkdirs(root)) return -1;
    for (int c = 0; c < cfg->n_classes; c++) {
        int id = cfg->first_class + c;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/device_%03d", root, id);
        if (st_mkdirs(dir)) return -1;
        for (int j = 0; j < cfg->images_per_class; j++) {
            int i = cfg->first_image + j;
            st_image img;
            st_synth_render(cfg->seed, id, i, cfg->width, cfg->height, &img);
            /* A fixed, interleaved choice of format so every class has both kinds. */
            int jpeg = (double)((i * 7 + id) % 20) < cfg->jpeg_fraction * 20.0;
            char path[4400];
            snprintf(path, sizeof path, "%s/%03d.%s", dir, i, jpeg ? "jpg" : "png");
            int rc = jpeg ? st_image_write_jpeg(path, &img, 90) : st_image_write_png(path, &img);
            st_image_free(&img);
            if (rc) return -1;
        }
        if (progress) fprintf(progress, "  generated %s (%d images)\n", dir, cfg->images_per_class), fflush(progress);
    }
    return 0;
}
