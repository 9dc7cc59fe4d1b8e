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

/* Median of v (n >= 1), sorting v in place; the mean of the two middle values when n is even. */
double st_median(double *v, long n);

/* Mean and sample standard deviation (n - 1 denominator; 0 when n < 2). */
void st_mean_std(const double *v, long n, double *mean, double *std);

#endif
