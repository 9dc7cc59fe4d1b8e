/* embedder.c: images -> embedding vectors (contract in embedder.h). */
#include "embedder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"
#include "../kernels/math/l2norm.h"
#include "../kernels/math/pool.h"
#include "data/loader.h"
#include "data/base/rng.h"
#include "data/transform.h"
#include "weights_h5.h"

#define RMAC_SCALES 3
#define RMAC_OVERLAP 0.4

struct st_embedder {
    st_embedder_options o;
    st_backend *be;
    st_model *m;
    st_transform transform;
    st_decode_opts decode;
    int layer_index;     /* feature map exported and pooled on the host; -1: model output */
    int use_embedding;   /* model output = the `embedding` head (else the pooled features) */
    int dim;
    char arch[32];
    char layer_name[64];
    st_embedder_settings settings;
    char weights_id[17];  /* 16 hex digits */
    float *host_input;   /* (batch, S, S, 3) */
    float *host_map;     /* (batch, H, W, C): the layer map R-MAC pools on the host; else NULL */
    float *pooled;       /* device (batch, C): the layer map through the gpool op; else NULL */
    float *normalized;   /* device (batch, D): the l2norm op's output (normalize, not R-MAC) */
    float *norms;        /* device (batch): its divisors */
};

int st_embed_pool_parse(const char *name, st_embed_pool *out) {
    static const char *names[] = {"avg", "max", "gem", "rmac"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *out = (st_embed_pool)i;
            return 0;
        }
    return st_error_set("unknown pooling '%s' (expected avg, max, gem or rmac)", name);
}

const char *st_embed_pool_name(st_embed_pool p) {
    static const char *names[] = {"avg", "max", "gem", "rmac"};
    return p == ST_EMBED_POOL_AUTO ? "auto" : names[p];
}

void st_embedder_defaults(st_embedder_options *o) {
    memset(o, 0, sizeof *o);
    o->pool = ST_EMBED_POOL_AUTO;
    o->gem_p = 0;
    o->normalize = -1;
    o->batch = 16;
    o->image_size = 0;
    o->device = "cpu";
}

/* The options the caller left open, from the file's recipe, else the defaults. */
static void resolve_settings(const st_embedder_options *o, const st_weights_info *info, st_embedder_settings *s) {
    const st_weights_recipe *r = &info->recipe;
    const char *from_file = r->present ? "weights" : "default", *flag = o->set_by ? o->set_by : "flag";
    s->preprocess = st_preprocess_name(info->preprocess);
    s->size_from = o->image_size > 0 ? flag : from_file;
    s->image_size = o->image_size > 0 ? o->image_size : r->present ? r->image_size : 224;
    s->resize_short = o->image_size <= 0 && r->present ? r->resize_short : s->image_size * 256 / 224;
    s->pool_from = o->pool != ST_EMBED_POOL_AUTO ? flag : from_file;
    s->pool = o->pool;
    if (o->pool == ST_EMBED_POOL_AUTO && (!r->present || st_embed_pool_parse(r->pool, &s->pool) != 0))
        s->pool = ST_EMBED_POOL_AVG; /* read_recipe accepted only avg, max or gem */
    s->gem_from = o->gem_p > 0 ? flag : from_file;
    s->gem_p = o->gem_p > 0 ? o->gem_p : r->present ? r->gem_p : 3.0f;
    s->normalize_from = o->normalize >= 0 ? flag : from_file;
    s->normalize = o->normalize >= 0 ? o->normalize : r->present ? r->normalize : 1;
}

const st_embedder_settings *st_embedder_settings_of(const st_embedder *e) { return &e->settings; }
const char *st_embedder_weights_id(const st_embedder *e) { return e->weights_id; }

void st_embedder_describe(const st_embedder *e, char *out, size_t size) {
    const st_embedder_settings *s = &e->settings;
    char gem[48] = "";
    if (s->pool == ST_EMBED_POOL_GEM) snprintf(gem, sizeof gem, " p=%g (%s)", s->gem_p, s->gem_from);
    snprintf(out, size,
             "%s, %d px (%s), shorter side %d + centre crop, preprocess %s, %s %s D=%d, pooling %s (%s)%s, %s (%s)",
             e->arch, s->image_size, s->size_from, s->resize_short, s->preprocess,
             e->layer_index >= 0 ? "layer" : "output", e->layer_name, e->dim, st_embed_pool_name(s->pool),
             s->pool_from, gem, s->normalize ? "L2-normalised" : "not normalised", s->normalize_from);
}

/* 64-bit hash of the parameter values in model order (the classifier excluded: it never shapes
 * a vector), through a host buffer. */
static void hash_parameters(st_embedder *e) {
    uint64_t h = 0x53494D54554E45ull; /* "SIMTUNE" */
    for (int i = 0; i < e->m->n_params; i++) {
        const st_param *p = &e->m->params[i];
        if (!strcmp(p->layer, "predictions")) continue;
        float *host = ST_MALLOC(p->numel * sizeof(float));
        st_param_download(e->m, p, p->value, host);
        for (size_t j = 0; j < p->numel; j++) {
            uint32_t bits;
            memcpy(&bits, &host[j], sizeof bits);
            h ^= bits;
            h = st_splitmix64(&h);
        }
        free(host);
    }
    snprintf(e->weights_id, sizeof e->weights_id, "%016llx", (unsigned long long)h);
}

int st_embedder_dim(const st_embedder *e) { return e->dim; }
const char *st_embedder_arch(const st_embedder *e) { return e->arch; }
const char *st_embedder_layer(const st_embedder *e) { return e->layer_name; }
st_backend *st_embedder_backend(const st_embedder *e) { return e->be; }

static st_gpool_kind model_pool(st_embed_pool p) {
    return p == ST_EMBED_POOL_MAX ? ST_GPOOL_MAX : p == ST_EMBED_POOL_GEM ? ST_GPOOL_GEM : ST_GPOOL_AVG;
}

/* Build the model, load the weights and pick the exported tensor. */
static int embedder_build(st_embedder *e, const st_weights_info *info) {
    const st_embedder_options *o = &e->o;
    const st_embedder_settings *s = &e->settings;
    int host_pool = o->layer || s->pool == ST_EMBED_POOL_RMAC;
    st_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = e->arch; /* outlives info: the model keeps the pointer */
    cfg.batch = o->batch;
    cfg.height = cfg.width = s->image_size;
    cfg.pool = model_pool(s->pool);
    cfg.gem_p = s->gem_p;
    cfg.embed_dim = host_pool ? 0 : info->embed_dim;
    /* a frozen boundary layer keeps its output in inference: that is how a feature map stays
     * readable after the forward pass ("all" = the last map before avg_pool) */
    cfg.freeze_until = host_pool ? (o->layer ? o->layer : "all") : NULL;
    cfg.bn_momentum = 0.1f;
    cfg.precision = o->precision;
    e->m = st_model_create(e->be, &cfg, 0);
    if (!e->m) return -1;
    if (st_weights_load(e->m, o->weights, NULL) != 0) return -1;
    hash_parameters(e);
    if (!host_pool) {
        e->layer_index = -1;
        e->use_embedding = info->embed_dim > 0;
        e->dim = e->use_embedding ? info->embed_dim : e->m->feature_dim;
        snprintf(e->layer_name, sizeof e->layer_name, "%s", info->embed_dim > 0 ? "embedding" : "avg_pool");
        return 0;
    }
    e->layer_index = o->layer ? st_model_layer_index(e->m, o->layer) : st_model_layer_index(e->m, "avg_pool") - 1;
    st_tensor t = st_model_layer_output(e->m, e->layer_index);
    snprintf(e->layer_name, sizeof e->layer_name, "%s", st_model_layer_name(e->m, e->layer_index));
    if (!t.data)
        return st_error_set("%s: layer '%s': its output is fused into the next step and never "
                            "stored; HINT: export a block output (e.g. conv4_block6_out) or a "
                            "*_relu layer",
                            o->weights, e->layer_name);
    e->dim = t.c;
    return 0;
}

/* The batch buffers of the struct: host input, and per export path the host map (R-MAC) or the
 * device outputs of the backend's pooling and normalisation. */
static void embedder_buffers(st_embedder *e) {
    st_backend *be = e->be;
    size_t batch = (size_t)e->o.batch, size = (size_t)e->settings.image_size;
    int rmac = e->settings.pool == ST_EMBED_POOL_RMAC;
    e->host_input = ST_MALLOC(batch * size * size * 3 * sizeof(float));
    if (rmac)
        e->host_map = ST_MALLOC(st_numel(st_model_layer_output(e->m, e->layer_index)) * sizeof(float));
    else if (e->layer_index >= 0)
        e->pooled = be->alloc(be, batch * e->dim * sizeof(float));
    if (!rmac && e->settings.normalize) {
        e->normalized = be->alloc(be, batch * e->dim * sizeof(float));
        e->norms = be->alloc(be, batch * sizeof(float));
    }
}

int st_embedder_open(const st_embedder_options *o, st_embedder **out) {
    *out = NULL;
    if (o->batch < 1 || (o->image_size > 0 && o->image_size < 32))
        return st_error_set("batch %d must be >= 1 and image size %d >= 32", o->batch, o->image_size);
    st_weights_info info;
    if (st_weights_probe(o->weights, &info) != 0) return -1;
    if (!info.arch_info) {
        st_error_set("%s: cannot tell the architecture (%s); HINT: convert torchvision weights "
                     "with tools/torchvision2h5.py, or use a Keras application or simtune file",
                     o->weights, info.arch_reason);
        st_weights_info_free(&info);
        return -1;
    }
    st_embedder *e = ST_CALLOC(1, sizeof *e);
    e->o = *o;
    snprintf(e->arch, sizeof e->arch, "%s", info.arch);
    resolve_settings(o, &info, &e->settings);
    int size = e->settings.image_size;
    e->transform = st_transform_eval(size, e->settings.resize_short, info.preprocess);
    e->decode = st_decode_opts_default();
    e->decode.min_short_side = st_transform_min_decode_side(&e->transform);
    e->be = st_backend_open(o->device, o->threads);
    int rc = e->be ? embedder_build(e, &info) : -1;
    st_weights_info_free(&info);
    if (rc != 0) {
        st_embedder_close(e);
        return -1;
    }
    embedder_buffers(e);
    *out = e;
    return 0;
}

void st_embedder_close(st_embedder *e) {
    if (!e) return;
    if (e->be) {
        e->be->free(e->be, e->pooled);
        e->be->free(e->be, e->normalized);
        e->be->free(e->be, e->norms);
    }
    if (e->m) st_model_free(e->m);
    st_backend_close(e->be);
    free(e->host_input);
    free(e->host_map);
    free(e);
}

/* ---- R-MAC on the host, from a feature map (H, W, C) ------------------------------------ */

/* out (c) = the maximum over the region rows [y0, y0 + side_h) x columns [x0, x0 + side_w) of x,
 * the max-pool window of kernels/math/pool.h (the region lies inside the map: nothing clipped). */
static void region_max(const float *x, int h, int w, int c, int y0, int x0, int side_h, int side_w,
                       float *out) {
    st_pool_desc d = {.h = h, .w = w, .c = c, .r = side_h, .s = side_w};
    st_pool_window win = {.h0 = y0, .w0 = x0, .r0 = 0, .r1 = side_h, .s0 = 0, .s1 = side_w};
    st_maxpool_window_max(&d, &win, x, 0, c, out);
}

static void l2_normalise(float *v, int n) { st_l2_normalize_row(v, v, n, ST_L2_EPS); }

/* Extra window positions along the long side so that windows of the short side overlap by
 * closest to RMAC_OVERLAP (Tolias et al.'s choice among 1..6 extra positions). */
static int rmac_extra_steps(int long_side, int short_side) {
    if (long_side == short_side) return 0;
    int best = 0;
    double best_err = 1e30;
    for (int steps = 2; steps <= 7; steps++) {
        double stride = (double)(long_side - short_side) / (steps - 1);
        double overlap = ((double)short_side * short_side - short_side * stride) / ((double)short_side * short_side);
        double err = fabs(overlap - RMAC_OVERLAP);
        if (err < best_err) {
            best_err = err;
            best = steps - 1;
        }
    }
    return best;
}

/* Window origins: count positions spread evenly over [0, size - side]. */
static int window_origin(int size, int side, int count, int index) {
    if (count <= 1) return 0;
    return (int)floor((double)(size - side) * index / (count - 1));
}

static void rmac(const float *x, int h, int w, int c, float *out, float *region) {
    int short_side = h < w ? h : w;
    int extra = rmac_extra_steps(h > w ? h : w, short_side);
    int extra_h = h > w ? extra : 0, extra_w = w > h ? extra : 0;
    region_max(x, h, w, c, 0, 0, h, w, out); /* the whole map */
    l2_normalise(out, c);
    for (int l = 1; l <= RMAC_SCALES; l++) {
        int side = 2 * short_side / (l + 1);
        if (side < 1) continue;
        int nh = l + extra_h, nw = l + extra_w;
        for (int a = 0; a < nh; a++)
            for (int b = 0; b < nw; b++) {
                region_max(x, h, w, c, window_origin(h, side, nh, a), window_origin(w, side, nw, b),
                           side, side, region);
                l2_normalise(region, c);
                for (int ch = 0; ch < c; ch++) out[ch] += region[ch];
            }
    }
}

/* ---- running ---------------------------------------------------------------------------- */

/* The batch's vectors on the device: the model output, or the layer map through the backend's
 * global-pool op; normalised there by its l2norm op when asked. */
static const float *device_vectors(st_embedder *e, int nb) {
    st_backend *be = e->be;
    const float *v = e->use_embedding ? e->m->embedding.data : e->m->features.data;
    if (e->layer_index >= 0) {
        st_tensor t = st_model_layer_output(e->m, e->layer_index);
        st_gpool_desc d = {.n = nb, .hw = t.h * t.w, .c = t.c, .kind = model_pool(e->settings.pool),
                           .p = e->settings.gem_p, .eps = ST_GEM_EPS};
        be->gpool_forward(be, &d, t.data, e->pooled);
        v = e->pooled;
    }
    if (!e->settings.normalize) return v;
    be->l2norm_forward(be, nb, e->dim, v, e->normalized, e->norms, ST_L2_EPS);
    return e->normalized;
}

/* R-MAC of the batch on the host from the downloaded layer map, normalised with the l2norm op's
 * formula when asked. */
static void rmac_batch(st_embedder *e, int nb, float *out) {
    st_tensor t = st_model_layer_output(e->m, e->layer_index);
    size_t per_image = (size_t)t.h * t.w * t.c;
    e->be->download(e->be, e->host_map, t.data, (size_t)nb * per_image * sizeof(float));
#pragma omp parallel
    {
        float *region = ST_MALLOC((size_t)t.c * sizeof(float));
#pragma omp for schedule(static)
        for (int i = 0; i < nb; i++) {
            float *v = out + (size_t)i * t.c;
            rmac(e->host_map + i * per_image, t.h, t.w, t.c, v, region);
            if (e->settings.normalize) l2_normalise(v, t.c);
        }
        free(region);
    }
}

static void export_batch(st_embedder *e, int nb, float *out) {
    if (e->settings.pool == ST_EMBED_POOL_RMAC) rmac_batch(e, nb, out);
    else e->be->download(e->be, out, device_vectors(e, nb), (size_t)nb * e->dim * sizeof(float));
}

size_t st_embedder_input_floats(const st_embedder *e) {
    return (size_t)e->settings.image_size * e->settings.image_size * 3;
}

int st_embedder_batch(const st_embedder *e) { return e->o.batch; }

int st_embedder_prepare(const st_embedder *e, const uint8_t *data, size_t size, const char *name,
                        int64_t max_pixels, float *input) {
    st_decode_opts opts = e->decode;
    if (max_pixels > 0) opts.max_pixels = max_pixels;
    st_image img;
    if (st_image_decode_mem(data, size, name, &opts, &img) != 0) return -1;
    st_transform_apply(&e->transform, &img, NULL, input);
    st_image_free(&img);
    return 0;
}

void st_embedder_run_prepared(st_embedder *e, const float *inputs, int n, float *out) {
    ST_CHECK(n >= 1 && n <= e->o.batch, "%d prepared inputs for a batch of %d", n, e->o.batch);
    e->be->upload(e->be, e->m->input.data, inputs, (size_t)n * st_embedder_input_floats(e) * sizeof(float));
    st_model_forward(e->m, n, 0);
    export_batch(e, n, out);
}

long st_embedder_run(st_embedder *e, const char *const *paths, long n, float *out, uint8_t *ok) {
    int s = e->settings.image_size;
    size_t image_floats = (size_t)s * s * 3;
    long *slot = ST_MALLOC((size_t)e->o.batch * sizeof(long)); /* batch position -> image */
    float *vectors = ST_MALLOC((size_t)e->o.batch * e->dim * sizeof(float));
    long done = 0;
    for (long i0 = 0; i0 < n; i0 += e->o.batch) {
        int count = n - i0 < e->o.batch ? (int)(n - i0) : e->o.batch;
#pragma omp parallel for schedule(dynamic, 1)
        for (int j = 0; j < count; j++) {
            st_rng rng; /* the evaluation transform draws nothing; the API wants a stream */
            st_rng_seed(&rng, (uint64_t)(i0 + j));
            ok[i0 + j] = st_load_image_transformed(paths[i0 + j], &e->decode, &e->transform, &rng,
                                                   e->host_input + (size_t)j * image_floats) == 0;
            if (!ok[i0 + j]) fprintf(stderr, "warning: skipping %s\n", st_error_get());
        }
        int nb = 0; /* pack the good images to the front of the batch */
        for (int j = 0; j < count; j++) {
            if (!ok[i0 + j]) continue;
            if (nb != j)
                memcpy(e->host_input + (size_t)nb * image_floats, e->host_input + (size_t)j * image_floats,
                       image_floats * sizeof(float));
            slot[nb++] = i0 + j;
        }
        for (int j = 0; j < count; j++) memset(out + (size_t)(i0 + j) * e->dim, 0, (size_t)e->dim * sizeof(float));
        if (nb == 0) continue;
        st_embedder_run_prepared(e, e->host_input, nb, vectors);
        for (int j = 0; j < nb; j++)
            memcpy(out + (size_t)slot[j] * e->dim, vectors + (size_t)j * e->dim, (size_t)e->dim * sizeof(float));
        done += nb;
    }
    free(slot);
    free(vectors);
    return done;
}
