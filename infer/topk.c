/*
 * topk.c: tiled exact top-k search (contract in topk.h).
 *
 * The gallery (st_topk_gallery): rows are fetched tile by tile into page-locked host memory,
 * uploaded with upload_async through two alternating stages (the host reads tile t+1 while the
 * device works on tile t) and prepared on the device: normalised for cosine by l2norm_forward
 * (kernels/math/l2norm.h's row formula and clamp, ST_L2_EPS), as is for ip; for l2 the extra
 * column -|g|^2/2 is added on the host (its norm is kept in double). A gallery that fits the
 * resident budget is loaded once; otherwise it streams again for every query block.
 *
 * Per query block: the block is prepared on the host (normalised for cosine with the same
 * formula; an extra column of ones for l2) and uploaded once; then every gallery tile is scored
 * with one GEMM (scores (B, T) = alpha * Q (B, ld) * G (T, ld)^T, alpha = 2 for l2) and merged
 * into the running lists by the backend's topk_merge. Only the (B, k) lists come back to the
 * host. The score tile T depends on B and ld only, so a resident and a streamed gallery run the
 * same GEMMs.
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

/* ---- the gallery on the device ------------------------------------------------------ */

typedef struct {
    const float *gallery; /* (N, D) */
    int d;
} matrix_source;

static int matrix_rows(void *ctx, long start, long count, float *dst) {
    const matrix_source *m = ctx;
    memcpy(dst, m->gallery + (size_t)start * m->d, (size_t)count * m->d * sizeof(float));
    return 0;
}

/* One half of the double buffer a gallery tile passes through on its way to the device. */
typedef struct {
    float *raw_host;   /* (T, d) rows() target, host_alloc (page-locked on CUDA) */
    float *prep_host;  /* (T, ld) l2: rows with the -|g|^2/2 column; NULL otherwise */
    float *raw_dev;    /* (T, d) cosine: the rows before normalisation; NULL otherwise */
    float *norms_dev;  /* (T) cosine: the divisors l2norm_forward writes */
} tile_stage;

struct st_topk_gallery {
    st_backend *be;
    st_metric metric;
    int d, ld;                /* ld: d, or d + 1 for l2 */
    long n;
    float *resident;          /* (n, ld) prepared rows; NULL when streaming */
    st_gallery_rows_fn rows;  /* streaming: the source, read again for every query block */
    void *ctx;
    matrix_source matrix;     /* the source of st_topk_gallery_open_matrix (ctx points here) */
};

static void stage_open(st_backend *be, const st_topk_gallery *g, long tile, tile_stage *s) {
    s->raw_host = be->host_alloc(be, (size_t)tile * g->d * sizeof(float));
    s->prep_host = g->metric == ST_METRIC_L2
                       ? be->host_alloc(be, (size_t)tile * g->ld * sizeof(float)) : NULL;
    s->raw_dev = g->metric == ST_METRIC_COSINE
                     ? be->alloc(be, (size_t)tile * g->d * sizeof(float)) : NULL;
    s->norms_dev = g->metric == ST_METRIC_COSINE ? be->alloc(be, (size_t)tile * sizeof(float))
                                                 : NULL;
}

static void stage_close(st_backend *be, tile_stage *s) {
    be->host_free(be, s->raw_host);
    be->host_free(be, s->prep_host);
    be->free(be, s->raw_dev);
    be->free(be, s->norms_dev);
}

/* Rows [g0, g0+nt) prepared for the metric into dst (nt, ld) on the device, through stage s:
 * read on the host, uploaded without a host wait, normalised there for cosine (the formula of
 * kernels/math/l2norm.h, as the host preparation of queries). The fence first: the copy that
 * last read this stage (two tiles ago) must be done before rows() overwrites it. */
static int tile_to_device(const st_topk_gallery *g, long g0, long nt, tile_stage *s, float *dst) {
    st_backend *be = g->be;
    be->upload_fence(be);
    if (g->rows(g->ctx, g0, nt, s->raw_host) != 0) return -1;
    if (g->metric == ST_METRIC_L2) {
        prepare_rows(s->raw_host, nt, g->d, g->ld, g->metric, 0, s->prep_host, NULL);
        be->upload_async(be, dst, s->prep_host, (size_t)nt * g->ld * sizeof(float));
    } else if (g->metric == ST_METRIC_COSINE) {
        be->upload_async(be, s->raw_dev, s->raw_host, (size_t)nt * g->d * sizeof(float));
        be->l2norm_forward(be, (int)nt, g->d, s->raw_dev, dst, s->norms_dev, ST_L2_EPS);
    } else {
        be->upload_async(be, dst, s->raw_host, (size_t)nt * g->d * sizeof(float));
    }
    return 0;
}

/* Whole gallery into g->resident, tile by tile through two stages. */
static int gallery_load(st_topk_gallery *g, long tile) {
    tile_stage stages[2] = {{0}};
    for (int i = 0; i < 2; i++) stage_open(g->be, g, tile, &stages[i]);
    int rc = 0;
    for (long g0 = 0, t = 0; rc == 0 && g0 < g->n; g0 += tile, t++) {
        long nt = g->n - g0 < tile ? g->n - g0 : tile;
        rc = tile_to_device(g, g0, nt, &stages[t & 1], g->resident + (size_t)g0 * g->ld);
    }
    g->be->upload_fence(g->be);
    for (int i = 0; i < 2; i++) stage_close(g->be, &stages[i]);
    return rc;
}

static st_topk_gallery *gallery_create(st_backend *be, st_metric metric, int d, long n,
                                       st_gallery_rows_fn rows, void *ctx) {
    ST_CHECK(d >= 1 && n >= 0, "topk gallery: d=%d n=%ld", d, n);
    st_topk_gallery *g = ST_CALLOC(1, sizeof *g);
    *g = (st_topk_gallery){.be = be, .metric = metric, .d = d,
                           .ld = metric == ST_METRIC_L2 ? d + 1 : d, .n = n, .rows = rows,
                           .ctx = ctx};
    return g;
}

/* Resident when the prepared rows fit the budget (0: half the free memory), else streaming. */
static int gallery_place(st_topk_gallery *g, size_t resident_budget, st_topk_gallery **out) {
    st_backend *be = g->be;
    size_t bytes = (size_t)g->n * g->ld * sizeof(float);
    if (resident_budget == 0) {
        size_t free_bytes = 0, total_bytes = 0;
        be->mem_info(be, &free_bytes, &total_bytes);
        resident_budget = free_bytes / 2; /* the rest: search buffers, other users */
    }
    *out = g;
    if (bytes > resident_budget) return 0;
    g->resident = be->alloc(be, bytes ? bytes : sizeof(float));
    long tile = (long)(TOPK_BUDGET_BYTES / 2 / (sizeof(float) * (size_t)(g->d + g->ld)));
    if (tile < TOPK_MIN_TILE_ROWS) tile = TOPK_MIN_TILE_ROWS;
    if (gallery_load(g, tile) == 0) return 0;
    st_topk_gallery_close(g);
    *out = NULL;
    return -1;
}

int st_topk_gallery_open(st_backend *be, st_metric metric, int d, long n, st_gallery_rows_fn rows,
                         void *ctx, size_t resident_budget, st_topk_gallery **out) {
    return gallery_place(gallery_create(be, metric, d, n, rows, ctx), resident_budget, out);
}

int st_topk_gallery_open_matrix(st_backend *be, st_metric metric, const float *gallery, long n,
                                int d, size_t resident_budget, st_topk_gallery **out) {
    st_topk_gallery *g = gallery_create(be, metric, d, n, matrix_rows, NULL);
    g->matrix = (matrix_source){gallery, d};
    g->ctx = &g->matrix; /* in the gallery: valid for as long as a streamed gallery needs it */
    return gallery_place(g, resident_budget, out);
}

int st_topk_gallery_is_resident(const st_topk_gallery *g) { return g->resident != NULL; }

void st_topk_gallery_close(st_topk_gallery *g) {
    if (!g) return;
    g->be->free(g->be, g->resident);
    free(g);
}

/* ---- search ------------------------------------------------------------------------- */

typedef struct {
    int block;         /* queries per block B */
    long tile;         /* gallery rows per score tile T */
    int k_search;      /* k, or k + 1 with self-exclusion */
    float *q_dev;      /* (B, ld) */
    float *s_dev;      /* (B, T) */
    float *key_dev;    /* (B, k_search) */
    int64_t *idx_dev;  /* (B, k_search) */
    float *g_dev[2];   /* streaming: (T, ld) gallery tiles, used alternately; else NULL */
    tile_stage stage[2]; /* streaming: their staging */
} search_buffers;

static void buffers_open(st_backend *be, search_buffers *b, int ld) {
    b->q_dev = be->alloc(be, (size_t)b->block * ld * sizeof(float));
    b->s_dev = be->alloc(be, (size_t)b->block * b->tile * sizeof(float));
    b->key_dev = be->alloc(be, (size_t)b->block * b->k_search * sizeof(float));
    b->idx_dev = be->alloc(be, (size_t)b->block * b->k_search * sizeof(int64_t));
}

static void buffers_close(st_backend *be, search_buffers *b) {
    be->free(be, b->q_dev);
    be->free(be, b->s_dev);
    be->free(be, b->key_dev);
    be->free(be, b->idx_dev);
    for (int i = 0; i < 2; i++) {
        be->free(be, b->g_dev[i]);
        if (b->g_dev[i]) stage_close(be, &b->stage[i]);
    }
}

/* Empty lists for nb queries: worst key, index -1 (host staging in idx_host). */
static void lists_reset(st_backend *be, search_buffers *b, int nb, int64_t *idx_host) {
    size_t n = (size_t)nb * b->k_search;
    be->fill(be, b->key_dev, st_topk_worst_score(1), n);
    for (size_t i = 0; i < n; i++) idx_host[i] = -1;
    be->upload(be, b->idx_dev, idx_host, n * sizeof(int64_t));
}

static int query_block_of(const st_topk_options *o, int q) {
    int block = o->query_block > 0 ? o->query_block : TOPK_DEFAULT_QUERY_BLOCK;
    return block > q ? (q > 0 ? q : 1) : block;
}

long st_topk_tile_rows(const st_topk_options *o, int q, int d, long n_gallery) {
    int ld = o->metric == ST_METRIC_L2 ? d + 1 : d;
    long tile = o->tile_rows > 0
                    ? o->tile_rows
                    : (long)(TOPK_BUDGET_BYTES / (sizeof(float) * (size_t)(query_block_of(o, q) + ld)));
    if (o->tile_rows <= 0 && tile < TOPK_MIN_TILE_ROWS) tile = TOPK_MIN_TILE_ROWS;
    if (tile > n_gallery) tile = n_gallery > 0 ? n_gallery : 1;
    return tile > TOPK_MAX_TILE_ROWS ? TOPK_MAX_TILE_ROWS : tile; /* GEMM sizes are int */
}

/* B, T and k_search of one search, the same whether the gallery is resident or streams, so both
 * run the same GEMM shapes (identical scores on the CPU). */
static void buffers_size(const st_topk_gallery *g, const st_topk_options *o, int q,
                         search_buffers *b) {
    b->k_search = o->k + (o->self_index ? 1 : 0);
    b->block = query_block_of(o, q);
    b->tile = st_topk_tile_rows(o, q, g->d, g->n);
}

/* One query block (already on the device in b->q_dev) against every gallery tile. */
static int score_block(const st_topk_gallery *g, search_buffers *b, int nb) {
    st_backend *be = g->be;
    const float alpha = g->metric == ST_METRIC_L2 ? 2.0f : 1.0f;
    for (long g0 = 0, t = 0; g0 < g->n; g0 += b->tile, t++) {
        long nt = g->n - g0 < b->tile ? g->n - g0 : b->tile;
        const float *tile = g->resident ? g->resident + (size_t)g0 * g->ld : b->g_dev[t & 1];
        if (!g->resident && tile_to_device(g, g0, nt, &b->stage[t & 1], b->g_dev[t & 1]) != 0)
            return -1;
        be->gemm(be, 0, 1, nb, (int)nt, g->ld, alpha, b->q_dev, g->ld, tile, g->ld, 0.0f,
                 b->s_dev, (int)nt);
        be->topk_merge(be, nb, (int)nt, g0, b->k_search, 1, b->s_dev, b->key_dev, b->idx_dev);
    }
    return 0;
}

int st_topk_gallery_search(st_topk_gallery *g, const st_topk_options *o, const float *queries,
                           int q, st_topk_result *out) {
    ST_CHECK(o->k >= 1 && q >= 0 && o->metric == g->metric, "topk: k=%d q=%d metric %s vs %s",
             o->k, q, st_metric_name(o->metric), st_metric_name(g->metric));
    st_backend *be = g->be;
    search_buffers b = {0};
    buffers_size(g, o, q, &b);
    result_alloc(out, q, o->k);
    buffers_open(be, &b, g->ld);
    for (int i = 0; i < 2 && !g->resident; i++) {
        b.g_dev[i] = be->alloc(be, (size_t)b.tile * g->ld * sizeof(float));
        stage_open(be, g, b.tile, &b.stage[i]);
    }
    float *q_host = ST_MALLOC((size_t)b.block * g->ld * sizeof(float));
    double *q_sq = ST_MALLOC((size_t)b.block * sizeof(double));
    float *key_host = ST_MALLOC((size_t)b.block * b.k_search * sizeof(float));
    int64_t *idx_host = ST_MALLOC((size_t)b.block * b.k_search * sizeof(int64_t));
    int rc = 0;
    for (int q0 = 0; rc == 0 && q0 < q; q0 += b.block) {
        int nb = q - q0 < b.block ? q - q0 : b.block;
        prepare_rows(queries + (size_t)q0 * g->d, nb, g->d, g->ld, g->metric, 1, q_host, q_sq);
        be->upload(be, b.q_dev, q_host, (size_t)nb * g->ld * sizeof(float));
        lists_reset(be, &b, nb, idx_host);
        if ((rc = score_block(g, &b, nb)) != 0) break;
        be->download(be, key_host, b.key_dev, (size_t)nb * b.k_search * sizeof(float));
        be->download(be, idx_host, b.idx_dev, (size_t)nb * b.k_search * sizeof(int64_t));
        for (int i = 0; i < nb; i++) {
            size_t o_row = (size_t)(q0 + i) * o->k, s_row = (size_t)i * b.k_search;
            finalize_row(key_host + s_row, idx_host + s_row, b.k_search, o->k,
                         o->self_index ? o->self_index[q0 + i] : -1, o->metric, q_sq[i],
                         out->index + o_row, out->score + o_row, out->key + o_row);
        }
    }
    be->upload_fence(be); /* no copy may still read a stage freed below */
    buffers_close(be, &b);
    free(q_host);
    free(q_sq);
    free(key_host);
    free(idx_host);
    if (rc != 0) st_topk_result_free(out);
    return rc;
}

int st_topk_search(st_backend *be, const st_topk_options *o, const float *queries, int q, int d,
                   long n_gallery, st_gallery_rows_fn rows, void *ctx, st_topk_result *out) {
    ST_CHECK(o->k >= 1 && q >= 0 && d >= 1 && n_gallery >= 0, "topk: k=%d q=%d d=%d n=%ld", o->k,
             q, d, n_gallery);
    /* one query block reads the gallery once anyway: stream it (budget 1 byte) */
    size_t budget = q > query_block_of(o, q) ? 0 : 1;
    st_topk_gallery *g;
    if (st_topk_gallery_open(be, o->metric, d, n_gallery, rows, ctx, budget, &g) != 0) return -1;
    int rc = st_topk_gallery_search(g, o, queries, q, out);
    st_topk_gallery_close(g);
    return rc;
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
    b.k_search = k + (self_index ? 1 : 0);
    b.block = q < TOPK_DEFAULT_QUERY_BLOCK ? (q > 0 ? q : 1) : TOPK_DEFAULT_QUERY_BLOCK;
    b.tile = (long)(TOPK_BUDGET_BYTES / (sizeof(float) * (size_t)b.block));
    if (b.tile > n) b.tile = n > 0 ? n : 1;
    if (b.tile > TOPK_MAX_TILE_ROWS) b.tile = TOPK_MAX_TILE_ROWS;
    result_alloc(out, q, k);
    buffers_open(be, &b, 1); /* no GEMM here: q_dev stays minimal */
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
