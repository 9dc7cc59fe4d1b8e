/*
 * topk.h: exact top-k search of queries against a gallery, tile by tile, on any backend.
 *
 * Metrics and what is ranked / reported (every metric is ranked by a key where larger is better,
 * with ties broken by the lower gallery index, kernels/math/topk.h):
 *   cosine  key = score = <q/|q|, g/|g|>        (|x| clamped at 1e-12 as in F.normalize,
 *                                                kernels/math/l2norm.h: zero vectors score 0)
 *   ip      key = score = <q, g>
 *   l2      key = 2<q,g> - |g|^2 = |q|^2 - |q-g|^2 (one GEMM with an extra column);
 *           score = Euclidean distance sqrt(max(0, |q|^2 - key)), NOT squared (FAISS reports
 *           squared), smaller is better, clamped at 0 because the expanded form can round below
 *           zero. The order is the key's, so reported distances are non-decreasing along a list.
 * Empty slots (k larger than the gallery) hold index -1, key -FLT_MAX and the worst score
 * (-FLT_MAX for cosine/ip, +FLT_MAX for l2).
 *
 * Memory is bounded whatever the gallery size: the gallery is pulled through a row callback in
 * tiles of T rows (so it can stream from disk), queries go in blocks, and the device holds one
 * query block (B, D), one score tile (B, T), the (B, k) lists and the gallery: resident (N, D),
 * loaded once and prepared on the device, when it fits the resident budget (half the backend's
 * free memory by default), else two gallery tiles (T, D) streamed with double-buffered uploads
 * for every query block. T and B default to fit a 256 MiB score-plus-tile budget. Resident or
 * not, the scores and so the results are the same.
 *
 * Self-exclusion (leave-one-out): with self_index[i] = the gallery row that IS query i, that row
 * is removed from query i's list by index (an exact duplicate at another index stays and counts),
 * as pytorch-metric-learning does (search k+1, drop the matching index, else the last).
 */
#ifndef ST_TOPK_H
#define ST_TOPK_H

#include <stdint.h>

#include "../kernels/backend.h"

typedef enum { ST_METRIC_COSINE, ST_METRIC_IP, ST_METRIC_L2 } st_metric;

/* "cosine" | "ip" | "l2": 0, or -1 with st_error_set listing the choices. */
int st_metric_parse(const char *name, st_metric *out);
const char *st_metric_name(st_metric m);
/* Reported score of an empty slot for the metric. */
float st_metric_worst_score(st_metric m);

/* Copy rows [start, start+count) of the gallery into dst (count, D); 0, or -1 with st_error_set. */
typedef int (*st_gallery_rows_fn)(void *ctx, long start, long count, float *dst);

typedef struct st_topk_options {
    st_metric metric;
    int k;                      /* >= 1; may exceed the gallery size (padded) */
    long tile_rows;             /* gallery rows per tile T; 0 = from the memory budget */
    int query_block;            /* queries per block B; 0 = all queries up to 4096 */
    const int64_t *self_index;  /* (Q) gallery row to exclude per query, -1 none; or NULL */
} st_topk_options;

typedef struct st_topk_result {
    int q, k;
    int64_t *index;   /* (Q, k) gallery rows, -1 = empty */
    float *score;     /* (Q, k) reported score (see above) */
    float *key;       /* (Q, k) ranking key, larger is better; what run files must carry */
} st_topk_result;

/* A gallery opened once for many searches (the k-NN graph, a search service): resident on the
 * device when its prepared rows (N, D; D + 1 for l2) fit resident_budget bytes (0: half the free
 * memory be->mem_info reports), read through rows once at open; otherwise every search streams
 * it through rows again, which must stay valid until close. metric is fixed at open. 0, or -1
 * with st_error_set when rows fails (*out NULL). */
typedef struct st_topk_gallery st_topk_gallery;
int st_topk_gallery_open(st_backend *be, st_metric metric, int d, long n, st_gallery_rows_fn rows,
                         void *ctx, size_t resident_budget, st_topk_gallery **out);
/* Same with the gallery in host memory (N, D), which must stay valid until close. */
int st_topk_gallery_open_matrix(st_backend *be, st_metric metric, const float *gallery, long n,
                                int d, size_t resident_budget, st_topk_gallery **out);
/* 1 when the gallery is resident, 0 when it streams. */
int st_topk_gallery_is_resident(const st_topk_gallery *g);
/* queries (Q, D) host memory; o->metric must be the gallery's. 0, or -1 with st_error_set when a
 * streamed gallery's callback fails. */
int st_topk_gallery_search(st_topk_gallery *g, const st_topk_options *o, const float *queries,
                           int q, st_topk_result *out);
void st_topk_gallery_close(st_topk_gallery *g);

/* One search: the gallery is opened for it (resident when there is more than one query block and
 * it fits) and closed after. queries (Q, D) host memory. 0, or -1 with st_error_set when the
 * gallery callback fails. */
int st_topk_search(st_backend *be, const st_topk_options *o, const float *queries, int q, int d,
                   long n_gallery, st_gallery_rows_fn rows, void *ctx, st_topk_result *out);

/* Same with the gallery in host memory: gallery (N, D). */
int st_topk_search_matrix(st_backend *be, const st_topk_options *o, const float *queries, int q,
                          const float *gallery, long n_gallery, int d, st_topk_result *out);

/* Gallery rows per score tile T that a search of q queries against n_gallery rows (dimension d,
 * options o: tile_rows, query_block, metric) runs with: o->tile_rows, else from the 256 MiB budget,
 * at most n_gallery. Exported so that shards of one gallery can run with the whole gallery's T and
 * start on multiples of it: each shard then forms the very GEMMs of one search over the whole
 * gallery (cmd/topk.c under mpirun). */
long st_topk_tile_rows(const st_topk_options *o, int q, int d, long n_gallery);

/* Select the top-k of precomputed host keys (Q, N) (larger is better), e.g. diffusion scores;
 * self_index as in the options (may be NULL). score = key in the result. */
void st_topk_select_keys(st_backend *be, const float *keys, int q, long n, int k,
                         const int64_t *self_index, st_topk_result *out);

void st_topk_result_free(st_topk_result *r);

#endif
