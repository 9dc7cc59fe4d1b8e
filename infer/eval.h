/*
 * eval.h: retrieval evaluation protocols over embedding files (infer/embeddings_h5.h), producing
 * the metrics of infer/metrics.h and the ranked lists behind them (for run files and reports).
 *
 * Relevance: a gallery row is relevant to a query when both labels are equal and >= 0. With two
 * files (protocol files) labels are matched by /label_names when both files have them, else by
 * number.
 *
 * Protocols (called by `simtune eval`):
 *   split    stratified random split repeated `splits` times (seeds derived from (seed, split)):
 *            per class of n_c rows, round(query_fraction * n_c) rows (at most n_c - 1, so each
 *            class keeps a gallery row) become queries, the rest and every unlabelled row (-1)
 *            form the gallery; metrics are averaged per split, then mean and sample std over
 *            splits. With fixed class sizes every split has the same number of queries.
 *   loo      leave-one-out: every row is a query against all rows, excluding itself by index
 *            (an exact duplicate at another row stays and counts as a hit).
 *   files    an explicit gallery file and query file.
 *   rank100  every labelled row is a query; one random other row of its label (the positive)
 *            and 99 distinct random rows of other labels (unlabelled rows included) are scored;
 *            rank = 1 + #negatives scoring at least as well (pessimistic on ties). Negatives
 *            are drawn from a stream seeded by `seed`.
 *
 * Queries without any relevant gallery row (R = 0), and in rank100 queries without a positive or
 * with fewer than 99 possible negatives, are EXCLUDED from every average and counted in
 * `excluded` (the pytorch-metric-learning "lone query" policy). trec_eval agrees: such a topic
 * has no qrels line, and trec_eval averages over topics present in both qrels and run.
 *
 * Ranking depth: every list is ranked to `depth` = max(--depth or 1000, k, 100, largest R),
 * capped at the gallery size (but at least k), so hit/precision/map@c for c <= 100, map@r and
 * r-precision are exact; `map` is trec_eval's AP over that depth (the full AP when depth equals
 * the gallery size, which the report states). mean_rank / median_rank are the rank of the first
 * relevant row (depth + 1 when none is within the depth: a lower bound, only possible when
 * depth < gallery size).
 *
 * Post-processing (infer/postprocess.h), applied inside each split: PCA (fitted on that split's
 * gallery), alpha query expansion, diffusion; rank100 supports PCA only (fitted on all rows).
 */
#ifndef ST_EVAL_H
#define ST_EVAL_H

#include <stdint.h>

#include "../kernels/backend.h"
#include "embeddings_h5.h"
#include "postprocess.h"
#include "topk.h"

typedef enum { ST_PROTOCOL_SPLIT, ST_PROTOCOL_LOO, ST_PROTOCOL_FILES, ST_PROTOCOL_RANK100 } st_protocol;

int st_protocol_parse(const char *name, st_protocol *out); /* split | loo | rank100 (files is implied) */
const char *st_protocol_name(st_protocol p);

typedef struct st_eval_options {
    st_protocol protocol;
    st_metric metric;
    int k;                  /* extra cutoff besides 1, 5, 10 (default 10); topk.json length */
    int depth;              /* requested ranking depth, 0 = 1000 (see above) */
    int splits;             /* split: repetitions (10) */
    double query_fraction;  /* split: share of each class used as queries (0.2) */
    uint64_t seed;          /* split and rank100 sampling (0) */
    int pca_dims;           /* 0 = no PCA */
    int whiten;             /* PCA whitening */
    int qe;                 /* alpha query expansion with the top qe results, 0 = off */
    float qe_alpha;         /* (3) */
    int diffusion;          /* diffusion re-ranking */
    st_diffusion_options diffusion_options;
} st_eval_options;

void st_eval_defaults(st_eval_options *o);

enum { ST_EVAL_MAX_METRICS = 32, ST_EVAL_NAME_LEN = 24 };

/* The ranked lists of one split (the first for split): what run.trec, topk.json and the
 * contact sheet show. Rows refer to the gallery file (data, or the gallery of protocol files)
 * and the query file (data, or the query file). */
typedef struct st_eval_ranking {
    int q, depth;
    int64_t *query_rows;   /* (Q) */
    int64_t *result_rows;  /* (Q, depth), -1 empty */
    float *score;          /* (Q, depth) reported score */
    float *key;            /* (Q, depth) ranked-by key, larger is better */
    uint8_t *rel;          /* (Q, depth) 1 = relevant */
    long *n_relevant;      /* (Q) R; 0 = excluded query (rank100: 1 or 0) */
    int32_t *query_labels; /* (Q) in the gallery file's label space, -1 none */
    int excludes_self;     /* 1: query row q is not part of its own gallery (loo) */
    long n_gallery;
    int64_t *gallery_rows; /* (n_gallery) rows of the gallery file searched (rank100: NULL) */
} st_eval_ranking;

typedef struct st_eval_report {
    int n_metrics;
    char names[ST_EVAL_MAX_METRICS][ST_EVAL_NAME_LEN];
    int splits;
    double *per_split;     /* (splits, n_metrics) */
    double mean[ST_EVAL_MAX_METRICS], std[ST_EVAL_MAX_METRICS];
    long queries;          /* evaluated queries per split */
    long excluded;         /* excluded queries per split */
    long gallery_size;     /* gallery rows per split */
    int depth;
    st_eval_ranking first;
} st_eval_report;

/* data: the embeddings (gallery for files); queries: the query file (files only, else NULL).
 * 0, or -1 with st_error_set (no labels, bad options, dimension mismatch ...). */
int st_eval_run(st_backend *be, const st_eval_options *o, const st_embeddings *data,
                const char *data_path, const st_embeddings *queries, const char *queries_path,
                st_eval_report *out);
void st_eval_report_free(st_eval_report *r);

/* The mean over splits of the metric called name (report spelling, "map@r") and its std in
 * *std; NaN for both when the report has no such metric. */
double st_eval_report_metric(const st_eval_report *r, const char *name, double *std);

#endif
