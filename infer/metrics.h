/*
 * metrics.h: retrieval metrics of ONE query from its ranked hit list (docs/algorithms.md D).
 *
 * Input: rel (n) = 1 where the i-th retrieved item (rank i+1) is relevant, else 0; slots past
 * the end of the gallery (index -1) are passed as 0. R = number of relevant items in the WHOLE
 * gallery for this query (retrieved or not; the query itself excluded in leave-one-out).
 * Cutoffs past n count the missing ranks as non-relevant (trec_eval's padding).
 *
 *   hit@k          1 if a relevant item is in the top k (trec_eval success.k; the "Recall@K" of
 *                  the metric-learning literature, Song et al. CVPR 2016, is this same number)
 *   precision@k    (#relevant in top k) / k                       (trec_eval P.k)
 *   ap@k           (1/R) sum_{i<=k} rel(i) P@i                    (trec_eval map_cut.k: divided
 *                  by ALL relevant R, not by k nor min(k, R)); k <= 0 means the whole list (map)
 *   map@r          ap@R (Musgrave et al. MAP@R: the R nearest only, divided by R)
 *   r-precision    (#relevant in top R) / R
 *   first relevant rank (1-based; 0 when none is retrieved) and its reciprocal (recip_rank)
 * Every function returns 0 for R == 0 (trec_eval returns 0 for such a topic); whether such a
 * query is averaged at all is the protocol's decision (infer/eval.h excludes it).
 *
 * The 1+99 protocol: the rank of the positive among candidates, pessimistic on ties
 * (rank = 1 + #{negatives scoring at least as well as the positive}), so a collapsed embedding
 * where all scores tie ranks the positive last, not first.
 */
#ifndef ST_METRICS_H
#define ST_METRICS_H

#include <stddef.h>
#include <stdint.h>

double st_hit_at(const uint8_t *rel, int n, int k);
double st_precision_at(const uint8_t *rel, int n, int k);
double st_ap_at(const uint8_t *rel, int n, int k, long n_relevant);
double st_map_at_r(const uint8_t *rel, int n, long n_relevant);
double st_r_precision(const uint8_t *rel, int n, long n_relevant);
int st_first_relevant_rank(const uint8_t *rel, int n);
double st_recip_rank(const uint8_t *rel, int n);

/* Rank (1-based, pessimistic on ties) of the positive's score among n_neg negative scores.
 * NaN negatives are ignored; a NaN positive ranks last. */
int st_rank_of_positive(float positive, const float *negatives, int n_neg, int larger_is_better);

/* ---- the metric registry --------------------------------------------------------------------
 * The one list of metric names, used by config validation (train/config.c), the trainer's
 * validation (train/trainer.c), eval's report (infer/eval.c) and, through the config, the
 * sweep's objective. Names (docs/evaluation.md, docs/config.md):
 *   hit@K  precision@K  map@K  recall@K (= hit@K, the metric-learning name)  with K an integer
 *   in [1, 1000000] (strtoll base 10, as every config integer: "hit@05" is hit@5)
 *   map@R  (the R is either case: eval's report spells it map@r)  r-precision  map  mrr
 *   mean_rank  median_rank
 * Family names are lowercase and exact ("Hit@1", "MRR", "hit@0", "hit@", "map@x" are refused).
 * st_metric_id_format writes the canonical name (map@R as map@r); callers that key logs by a
 * user's spelling (metrics.jsonl's val/<name>) keep the spelling and use the parsed id. */
typedef enum {
    ST_MF_HIT, ST_MF_MAP_AT, ST_MF_PRECISION, ST_MF_RECALL, ST_MF_MAP_R, ST_MF_MRR,
    ST_MF_R_PRECISION, ST_MF_MAP, ST_MF_MEAN_RANK, ST_MF_MEDIAN_RANK
} st_metric_family;

typedef struct st_metric_id {
    st_metric_family family;
    int k; /* the cutoff of the @K families, else 0 */
} st_metric_id;

/* 0 and *out set, or -1 when name is not a metric (no message: callers word their own). */
int st_metric_id_parse(const char *name, st_metric_id *out);

/* The canonical name of id into buf ("map@10", "map@r", "mrr"). */
void st_metric_id_format(st_metric_id id, char *buf, size_t size);

/* 1 when a trainer's validation (validation.metrics) may report the family: hit@K, map@K,
 * precision@K, recall@K, map@R, mrr. */
int st_metric_in_validation(st_metric_family family);

/* The validation families as the config documents them, comma separated ("hit@K, map@K, ...,
 * mrr"): the hint of a rejected name. */
const char *st_metric_validation_names(void);

/* The value of one query for id (rel, n, n_relevant as above). The averaged families return
 * their per-query value; mean_rank and median_rank return the first relevant rank, n + 1 when
 * none is within the n ranks (a lower bound; the caller takes the mean or the median). */
double st_metric_of_query(st_metric_id id, const uint8_t *rel, int n, long n_relevant);

/* Median of v (n >= 1), sorting v in place; the mean of the two middle values when n is even. */
double st_median(double *v, long n);

/* Mean and sample standard deviation (n - 1 denominator; 0 when n < 2). */
void st_mean_std(const double *v, long n, double *mean, double *std);

#endif
