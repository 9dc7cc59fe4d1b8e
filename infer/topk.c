/*
 * topk.c: tiled exact top-k search (contract in topk.h).
 *
 * Per query block: the block is prepared on the host (normalised for cosine with
 * kernels/math/l2norm.h's row formula and clamp, ST_L2_EPS; an extra column of
 * ones for l2) and uploaded once; then for each gallery tile the rows are fetched, prepared
 * (normalised, or an extra column -|g|^2/2), uploaded, scored with one GEMM
 * (scores (B, T) = alpha * Q (B, ld) * G (T, ld)^T, alpha = 2 for l2) and merged into the running
 * lists by the backend's topk_merge. Only the (B, k) lists come back to the host.
 */
#include "topk.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"
#include "data/base/text.h"
#include "../kernels/math/l2norm.h"
#include "../kernels/math/topk.h"

#define TOPK_BUDGET_BYTES ((size_t)256 << 20) /* score tile + gallery tile on the device */
#define TOPK_DEFAULT_QUERY_BLOCK 4096
#define TOPK_MIN_TILE_ROWS 256
#define TOPK_MAX_TILE_ROWS (1L << 30)

static const char *const metric_names[] = {"cosine", "ip", "l2", NULL}; /* index = st_metric */

int st_metric_parse(const char *name, st_metric *out) {
    int i = st_name_index(metric_names, name);
    char choices[64];
    if (i < 0) return st_error_set("unknown metric '%s' (expected %s)", name, st_names_join(metric_names, choices, sizeof choices));
    *out = (st_metric)i;
    return 0;
}

const char *st_metric_name(st_metric m) { return metric_names[m]; }

float st_metric_worst_score(st_metric m) { return m == ST_METRIC_L2 ? FLT_MAX : -FLT_MAX; }

static void result_alloc(st_topk_result *r, int q, int k) {
    r->q = q;
    r->k = k;
    size_t n = (size_t)(q ? q : 1) * (size_t)k;
    r->index = ST_MALLOC(n * sizeof *r->index);
    r->score = ST_MALLOC(n * sizeof *r->score);
    r->key = ST_MALLOC(n * sizeof *r->key);
}

void st_topk_result_free(st_topk_result *r) {
    free(r->index);
    free(r->score);
    free(r->key);
    memset(r, 0, sizeof *r);
}

/* Copy rows x (n, d) into dst (n, ld) prepared for the metric: unit length for cosine (zero
 * rows stay zero); for l2 the extra column is `extra` for queries (1) or -|g|^2/2 for gallery
 * rows (extra < 0 requests that); sq_norms (n) receives |x|^2 when not NULL. */
static void prepare_rows(const float *x, long n, int d, int ld, st_metric metric, int is_query,
                         float *dst, double *sq_norms) {
#pragma omp parallel for schedule(static) if (n * d >= 65536)
    for (long i = 0; i < n; i++) {
        const float *src = x + (size_t)i * d;
        float *row = dst + (size_t)i * ld;
        double ss = st_l2_sum_squares(src, d);
        if (sq_norms) sq_norms[i] = ss;
        st_l2_scale_row(src, row, d, metric == ST_METRIC_COSINE ? st_l2_den(ss, ST_L2_EPS) : 1.0f);
        if (metric == ST_METRIC_L2) row[d] = is_query ? 1.0f : (float)(-0.5 * ss);
    }
}

/* Write the final k entries of one query from its k_search candidates, dropping self. */
static void finalize_row(const float *key, const int64_t *index, int k_search, int k,
                         int64_t self, st_metric metric, double query_sq_norm, int64_t *out_index,
                         float *out_score, float *out_key) {
    int out = 0;
    int dropped = self < 0; /* nothing to drop when there is no self */
    for (int j = 0; j < k_search && out < k; j++) {
        if (!dropped && index[j] == self) {
            dropped = 1;
            continue;
        }
        out_index[out] = index[j];
        out_key[out] = index[j] >= 0 ? key[j] : st_topk_worst_score(1);
        if (index[j] < 0) out_score[out] = st_metric_worst_score(metric);
        else if (metric == ST_METRIC_L2)
            out_score[out] = (float)sqrt(fmax(0.0, query_sq_norm - (double)key[j]));
        else out_score[out] = key[j];
        out++;
    }
}

typedef struct {
    int ld;            /* row length on the device: d, or d + 1 for l2 */
    int block;         /* queries per block B */
    long tile;         /* gallery rows per tile T */
    int k_search;      /* k, or k + 1 with self-exclusion */
    float *q_dev;      /* (B, ld) */
    float *g_dev;      /* (T, ld) */
    float *s_dev;      /* (B, T) */
    float *key_dev;    /* (B, k_search) */
    int64_t *idx_dev;  /* (B, k_search) */
} search_buffers;

static void buffers_open(st_backend *be, search_buffers *b) {
    b->q_dev = be->alloc(be, (size_t)b->block * b->ld * sizeof(float));
    b->g_dev = be->alloc(be, (size_t)b->tile * b->ld * sizeof(float));
    b->s_dev = be->alloc(be, (size_t)b->block * b->tile * sizeof(float));
    b->key_dev = be->alloc(be, (size_t)b->block * b->k_search * sizeof(float));
    b->idx_dev = be->alloc(be, (size_t)b->block * b->k_search * sizeof(int64_t));
}

static void buffers_close(st_backend *be, search_buffers *b) {
    be->free(be, b->q_dev);
    be->free(be, b->g_dev);
    be->free(be, b->s_dev);
    be->free(be, b->key_dev);
    be->free(be, b->idx_dev);
}

/* Empty lists for nb queries: worst key, index -1 (host staging in idx_host). */
static void lists_reset(st_backend *be, search_buffers *b, int nb, int64_t *idx_host) {
    size_t n = (size_t)nb * b->k_search;
    be->fill(be, b->key_dev, st_topk_worst_score(1), n);
    for (size_t i = 0; i < n; i++) idx_host[i] = -1;
    be->upload(be, b->idx_dev, idx_host, n * sizeof(int64_t));
}

int st_topk_search(st_backend *be, const st_topk_options *o, const float *queries, int q, int d,
                   long n_gallery, st_gallery_rows_fn rows, void *ctx, st_topk_result *out) {
    ST_CHECK(o->k >= 1 && q >= 0 && d >= 1 && n_gallery >= 0, "topk: k=%d q=%d d=%d n=%ld", o->k,
             q, d, n_gallery);
    search_buffers b = {0};
    b.ld = o->metric == ST_METRIC_L2 ? d + 1 : d;
    b.k_search = o->k + (o->self_index ? 1 : 0);
    b.block = o->query_block > 0 ? o->query_block : TOPK_DEFAULT_QUERY_BLOCK;
    if (b.block > q) b.block = q > 0 ? q : 1;
    b.tile = o->tile_rows > 0 ? o->tile_rows
                              : (long)(TOPK_BUDGET_BYTES / (sizeof(float) * (size_t)(b.block + b.ld)));
    if (o->tile_rows <= 0 && b.tile < TOPK_MIN_TILE_ROWS) b.tile = TOPK_MIN_TILE_ROWS;
    if (b.tile > n_gallery) b.tile = n_gallery > 0 ? n_gallery : 1;
    if (b.tile > TOPK_MAX_TILE_ROWS) b.tile = TOPK_MAX_TILE_ROWS; /* GEMM sizes are int */
    result_alloc(out, q, o->k);
    buffers_open(be, &b);

    float *q_host = ST_MALLOC((size_t)b.block * b.ld * sizeof(float));
    double *q_sq = ST_MALLOC((size_t)b.block * sizeof(double));
    float *g_raw = ST_MALLOC((size_t)b.tile * d * sizeof(float));
    float *g_host = b.ld == d && o->metric == ST_METRIC_IP ? g_raw
                                                           : ST_MALLOC((size_t)b.tile * b.ld * sizeof(float));
    float *key_host = ST_MALLOC((size_t)b.block * b.k_search * sizeof(float));
    int64_t *idx_host = ST_MALLOC((size_t)b.block * b.k_search * sizeof(int64_t));
    float alpha = o->metric == ST_METRIC_L2 ? 2.0f : 1.0f;
    int rc = 0;

    for (int q0 = 0; rc == 0 && q0 < q; q0 += b.block) {
        int nb = q - q0 < b.block ? q - q0 : b.block;
        prepare_rows(queries + (size_t)q0 * d, nb, d, b.ld, o->metric, 1, q_host, q_sq);
        be->upload(be, b.q_dev, q_host, (size_t)nb * b.ld * sizeof(float));
        lists_reset(be, &b, nb, idx_host);
        for (long g0 = 0; g0 < n_gallery; g0 += b.tile) {
            long nt = n_gallery - g0 < b.tile ? n_gallery - g0 : b.tile;
            if (rows(ctx, g0, nt, g_raw) != 0) {
                rc = -1;
                break;
            }
            if (g_host != g_raw) prepare_rows(g_raw, nt, d, b.ld, o->metric, 0, g_host, NULL);
            be->upload(be, b.g_dev, g_host, (size_t)nt * b.ld * sizeof(float));
            be->gemm(be, 0, 1, nb, (int)nt, b.ld, alpha, b.q_dev, b.ld, b.g_dev, b.ld, 0.0f,
                     b.s_dev, (int)nt);
            be->topk_merge(be, nb, (int)nt, g0, b.k_search, 1, b.s_dev, b.key_dev, b.idx_dev);
        }
        if (rc != 0) break;
        be->download(be, key_host, b.key_dev, (size_t)nb * b.k_search * sizeof(float));
        be->download(be, idx_host, b.idx_dev, (size_t)nb * b.k_search * sizeof(int64_t));
        for (int i = 0; i < nb; i++) {
            size_t o_row = (size_t)(q0 + i) * o->k, s_row = (size_t)i * b.k_search;
            finalize_row(key_host + s_row, idx_host + s_row, b.k_search, o->k,
                         o->self_index ? o->self_index[q0 + i] : -1, o->metric, q_sq[i],
                         out->index + o_row, out->score + o_row, out->key + o_row);
        }
    }

    buffers_close(be, &b);
    if (g_host != g_raw) free(g_host);
    free(g_raw);
    free(q_host);
    free(q_sq);
    free(key_host);
    free(idx_host);
    if (rc != 0) st_topk_result_free(out);
    return rc;
}

typedef struct {
    const float *gallery; /* (N, D) */
    int d;
} matrix_source;

static int matrix_rows(void *ctx, long start, long count, float *dst) {
    const matrix_source *m = ctx;
    memcpy(dst, m->gallery + (size_t)start * m->d, (size_t)count * m->d * sizeof(float));
    return 0;
}

int st_topk_search_matrix(st_backend *be, const st_topk_options *o, const float *queries, int q,
                          const float *gallery, long n_gallery, int d, st_topk_result *out) {
    matrix_source m = {gallery, d};
    return st_topk_search(be, o, queries, q, d, n_gallery, matrix_rows, &m, out);
}

void st_topk_select_keys(st_backend *be, const float *keys, int q, long n, int k,
                         const int64_t *self_index, st_topk_result *out) {
    ST_CHECK(k >= 1 && q >= 0 && n >= 0, "topk select: k=%d q=%d n=%ld", k, q, n);
    search_buffers b = {0};
    b.ld = 1; /* no GEMM here: q_dev and g_dev stay minimal */
    b.k_search = k + (self_index ? 1 : 0);
    b.block = q < TOPK_DEFAULT_QUERY_BLOCK ? (q > 0 ? q : 1) : TOPK_DEFAULT_QUERY_BLOCK;
    b.tile = (long)(TOPK_BUDGET_BYTES / (sizeof(float) * (size_t)b.block));
    if (b.tile > n) b.tile = n > 0 ? n : 1;
    if (b.tile > TOPK_MAX_TILE_ROWS) b.tile = TOPK_MAX_TILE_ROWS;
    result_alloc(out, q, k);
    buffers_open(be, &b);
    float *tile_host = ST_MALLOC((size_t)b.block * b.tile * sizeof(float));
    float *key_host = ST_MALLOC((size_t)b.block * b.k_search * sizeof(float));
    int64_t *idx_host = ST_MALLOC((size_t)b.block * b.k_search * sizeof(int64_t));
    for (int q0 = 0; q0 < q; q0 += b.block) {
        int nb = q - q0 < b.block ? q - q0 : b.block;
        lists_reset(be, &b, nb, idx_host);
        for (long g0 = 0; g0 < n; g0 += b.tile) {
            long nt = n - g0 < b.tile ? n - g0 : b.tile;
            for (int i = 0; i < nb; i++)
                memcpy(tile_host + (size_t)i * nt, keys + (size_t)(q0 + i) * n + g0,
                       (size_t)nt * sizeof(float));
            be->upload(be, b.s_dev, tile_host, (size_t)nb * nt * sizeof(float));
            be->topk_merge(be, nb, (int)nt, g0, b.k_search, 1, b.s_dev, b.key_dev, b.idx_dev);
        }
        be->download(be, key_host, b.key_dev, (size_t)nb * b.k_search * sizeof(float));
        be->download(be, idx_host, b.idx_dev, (size_t)nb * b.k_search * sizeof(int64_t));
        for (int i = 0; i < nb; i++) {
            size_t o_row = (size_t)(q0 + i) * k, s_row = (size_t)i * b.k_search;
            finalize_row(key_host + s_row, idx_host + s_row, b.k_search, k,
                         self_index ? self_index[q0 + i] : -1, ST_METRIC_IP, 0.0,
                         out->index + o_row, out->score + o_row, out->key + o_row);
        }
    }
    buffers_close(be, &b);
    free(tile_host);
    free(key_host);
    free(idx_host);
}
