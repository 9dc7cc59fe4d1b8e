/*
 * embedder.h: images -> embedding vectors with a ResNet from a weight file; shared by
 * `simtune embed` (a whole dataset) and `simtune search` (one query image).
 *
 * The architecture, preprocessing and an `embedding` head (simtune exports) come from the weight
 * file (infer/weights_h5.h st_weights_probe). Images go through the evaluation transform
 * (shorter side to image_size * 256/224, centre crop image_size, the architecture's
 * preprocessing) in batches; decoding and transforms run on the OpenMP threads.
 *
 * What a vector is (D = its length):
 *   layer NULL, pool avg|max|gem   the model's own output: the `embedding` head when the weight
 *                                  file has one (already L2-normalised), else the globally
 *                                  pooled last feature map (D = C_feat)
 *   layer NAME or pool rmac        the feature map (N, H, W, C) of layer NAME (default: the last
 *                                  one, before avg_pool) pooled on the host: avg, max, GeM
 *                                  (p = gem_p, clamp 1e-6), or R-MAC (below); D = C
 * R-MAC (Tolias et al., ICLR 2016): square regions at 3 scales, side 2 min(H, W) / (l + 1) at
 * scale l, l + extra positions along each side, the extra count along the long side chosen so
 * that consecutive windows overlap closest to 40%; the whole map is one more region. Each
 * region is max-pooled and L2-normalised, the region vectors are summed (no PCA-whitening of
 * regions). With `normalize`, every vector is L2-normalised at the end.
 *
 * A layer can be exported only when its output is materialised (outputs fused into the next
 * step, e.g. a conv before its BN, are not): the error names the layer and gives a HINT.
 * Bad images are skipped with one warning line each (ok[i] = 0), never silently.
 */
#ifndef ST_EMBEDDER_H
#define ST_EMBEDDER_H

#include <stdint.h>

#include "model.h"

typedef enum { ST_EMBED_POOL_AVG, ST_EMBED_POOL_MAX, ST_EMBED_POOL_GEM, ST_EMBED_POOL_RMAC } st_embed_pool;

int st_embed_pool_parse(const char *name, st_embed_pool *out); /* avg | max | gem | rmac */
const char *st_embed_pool_name(st_embed_pool p);

typedef struct st_embedder_options {
    const char *weights;   /* weight file */
    const char *layer;     /* NULL: the model's output (see above) */
    st_embed_pool pool;    /* avg */
    float gem_p;           /* 3 */
    int normalize;         /* 1: L2-normalise every vector */
    int batch;             /* images per forward pass (16) */
    int image_size;        /* crop side (224) */
    int threads;           /* 0 = all cores */
    const char *device;    /* "cpu" | "cuda" */
} st_embedder_options;

void st_embedder_defaults(st_embedder_options *o);

typedef struct st_embedder st_embedder;

/* 0, or -1 with st_error_set (unreadable weights, unknown architecture, unknown layer ...). */
int st_embedder_open(const st_embedder_options *o, st_embedder **out);
int st_embedder_dim(const st_embedder *e);
const char *st_embedder_arch(const st_embedder *e);
const char *st_embedder_layer(const st_embedder *e); /* the layer exported, or "embedding" / "avg_pool" */
st_backend *st_embedder_backend(const st_embedder *e); /* the device it runs on, for searches */

/* Embed n images: out (n, D); ok (n) = 1 for embedded images, 0 for skipped bad ones (their
 * rows are zero). Returns the number embedded. */
long st_embedder_run(st_embedder *e, const char *const *paths, long n, float *out, uint8_t *ok);

void st_embedder_close(st_embedder *e);

#endif
