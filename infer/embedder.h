/*
 * embedder.h: images -> embedding vectors with a ResNet from a weight file; shared by
 * `simtune embed` (a whole dataset) and `simtune search` (one query image).
 *
 * The architecture, preprocessing and an `embedding` head (simtune exports) come from the weight
 * file (infer/weights_h5.h st_weights_probe), and so do the image size, resize rule, pooling,
 * GeM p and normalisation when the file records the recipe it was trained with (embed_*
 * attributes of simtune files); an option set by the caller wins, and files without a recipe
 * (Keras, torchvision) get the defaults 224 px, avg, p = 3, normalised. st_embedder_settings
 * says what was used and where each value came from. Images go through the evaluation transform
 * (shorter side to resize_short = the recipe's, else image_size * 256/224; centre crop
 * image_size; the file's preprocessing) in batches; decoding and transforms run on the OpenMP
 * threads.
 *
 * What a vector is (D = its length):
 *   layer NULL, pool avg|max|gem   the model's own output: the `embedding` head when the weight
 *                                  file has one (already L2-normalised), else the globally
 *                                  pooled last feature map (D = C_feat)
 *   layer NAME or pool rmac        the feature map (N, H, W, C) of layer NAME (default: the last
 *                                  one, before avg_pool) pooled by the backend's global-pool op
 *                                  as the model's own head pools: avg, max, GeM (p = gem_p,
 *                                  clamp 1e-6); or R-MAC on the host (below); D = C
 * R-MAC (Tolias et al., ICLR 2016): square regions at 3 scales, side 2 min(H, W) / (l + 1) at
 * scale l, l + extra positions along each side, the extra count along the long side chosen so
 * that consecutive windows overlap closest to 40%; the whole map is one more region. Each
 * region is max-pooled and L2-normalised, the region vectors are summed (no PCA-whitening of
 * regions). With `normalize`, every vector is L2-normalised at the end by the backend's l2norm
 * op. Every normalisation is x / max(||x||, 1e-12); the host ones (R-MAC) and the host max use
 * the op's own formulas (kernels/math/l2norm.h, pool.h), so host and backend give the same
 * numbers.
 *
 * A layer can be exported only when its output is materialised (outputs fused into the next
 * step, e.g. a conv before its BN, are not): the error names the layer and gives a HINT.
 * Bad images are skipped with one warning line each (ok[i] = 0), never silently.
 *
 * Identity: st_embedder_weights_id is a 64-bit hash (16 hex digits) of the parameter values
 * the vectors depend on (every loaded parameter in model order, the classifier excluded), so an
 * embedding file records which weights built it and `search` can tell another model apart.
 */
#ifndef ST_EMBEDDER_H
#define ST_EMBEDDER_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef enum {
    ST_EMBED_POOL_AUTO = -1, /* the weight file's recipe, else avg */
    ST_EMBED_POOL_AVG,
    ST_EMBED_POOL_MAX,
    ST_EMBED_POOL_GEM,
    ST_EMBED_POOL_RMAC
} st_embed_pool;

int st_embed_pool_parse(const char *name, st_embed_pool *out); /* avg | max | gem | rmac */
const char *st_embed_pool_name(st_embed_pool p);

typedef struct st_embedder_options {
    const char *weights;   /* weight file */
    const char *layer;     /* NULL: the model's output (see above) */
    st_embed_pool pool;    /* AUTO: the recipe's, else avg */
    float gem_p;           /* 0: the recipe's, else 3 */
    int normalize;         /* 1 / 0: L2-normalise every vector or not; -1: the recipe's, else 1 */
    int batch;             /* images per forward pass (16) */
    int image_size;        /* crop side; 0: the recipe's, else 224 */
    int threads;           /* 0 = all cores */
    const char *device;    /* "cpu" | "cuda" */
    st_precision precision; /* convolutions in fp32 (default) or bf16 (model.h) */
    const char *set_by;    /* source named for the values set here (NULL: "flag") */
} st_embedder_options;

void st_embedder_defaults(st_embedder_options *o);

/* What an open embedder uses, each with its source: "flag" (set by the caller; o.set_by when
 * given), "weights" (the file's recipe) or "default". */
typedef struct st_embedder_settings {
    int image_size, resize_short;
    st_embed_pool pool;
    float gem_p;
    int normalize;
    const char *preprocess;                 /* caffe | tf | torch (always the file's) */
    const char *size_from, *pool_from, *gem_from, *normalize_from;
} st_embedder_settings;

typedef struct st_embedder st_embedder;

/* 0, or -1 with st_error_set (unreadable weights, unknown architecture, unknown layer ...). */
int st_embedder_open(const st_embedder_options *o, st_embedder **out);
int st_embedder_dim(const st_embedder *e);
const char *st_embedder_arch(const st_embedder *e);
const char *st_embedder_layer(const st_embedder *e); /* the layer exported, or "embedding" / "avg_pool" */
st_backend *st_embedder_backend(const st_embedder *e); /* the device it runs on, for searches */
const st_embedder_settings *st_embedder_settings_of(const st_embedder *e);
const char *st_embedder_weights_id(const st_embedder *e);
/* One line for humans: "resnet50, 64 px (weights), shorter side 73 + centre crop, preprocess
 * caffe, output embedding D=128, pooling gem (weights) p=4 (weights), L2-normalised (weights)". */
void st_embedder_describe(const st_embedder *e, char *out, size_t size);

/* Embed n images: out (n, D); ok (n) = 1 for embedded images, 0 for skipped bad ones (their
 * rows are zero, and a warning line each on stderr). Returns the number embedded. */
long st_embedder_run(st_embedder *e, const char *const *paths, long n, float *out, uint8_t *ok);

/* The query path of a server (cmd/serve.c), split so that many threads decode while one runs
 * the model: st_embedder_prepare decodes an in-memory JPEG/PNG (refusing more than max_pixels,
 * 0 = the decoder's default, from the header before any pixel is decoded) and applies the
 * evaluation transform into input (st_embedder_input_floats() floats), exactly what
 * st_embedder_run does per file; 0, or -1 with st_error_set naming `name`. Thread-safe.
 * st_embedder_run_prepared embeds n prepared inputs, 1 <= n <= st_embedder_batch(): out (n, D);
 * one thread at a time, as st_embedder_run. */
size_t st_embedder_input_floats(const st_embedder *e);
int st_embedder_batch(const st_embedder *e);
int st_embedder_prepare(const st_embedder *e, const uint8_t *data, size_t size, const char *name,
                        int64_t max_pixels, float *input);
void st_embedder_run_prepared(st_embedder *e, const float *inputs, int n, float *out);

void st_embedder_close(st_embedder *e);

#endif
