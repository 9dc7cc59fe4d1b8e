/* metrics.c: per-query retrieval metrics (definitions and conventions in metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

static int clamp_depth(int n, int k) { return k < n ? k : n; }

double st_hit_at(const uint8_t *rel, int n, int k) {
    for (int i = 0; i < clamp_depth(n, k); i++)
        if (rel[i]) return 1.0;
    return 0.0;
}

double st_precision_at(const uint8_t *rel, int n, int k) {
    if (k <= 0) return 0.0;
    int found = 0;
    for (int i = 0; i < clamp_depth(n, k); i++) found += rel[i] != 0;
    return (double)found / k;
}

double st_ap_at(const uint8_t *rel, int n, int k, long n_relevant) {
    if (n_relevant <= 0) return 0.0;
    int depth = k > 0 ? clamp_depth(n, k) : n;
    double sum = 0;
    int found = 0;
    for (int i = 0; i < depth; i++)
        if (rel[i]) sum += (double)++found / (i + 1);
    return sum / (double)n_relevant;
}

double st_map_at_r(const uint8_t *rel, int n, long n_relevant) {
    if (n_relevant <= 0) return 0.0;
    int cutoff = n_relevant < n ? (int)n_relevant : n;
    return st_ap_at(rel, cutoff, cutoff, n_relevant);
}

double st_r_precision(const uint8_t *rel, int n, long n_relevant) {
    if (n_relevant <= 0) return 0.0;
    int cutoff = n_relevant < n ? (int)n_relevant : n;
    int found = 0;
    for (int i = 0; i < cutoff; i++) found += rel[i] != 0;
    return (double)found / (double)n_relevant;
}

int st_first_relevant_rank(const uint8_t *rel, int n) {
    for (int i = 0; i < n; i++)
        if (rel[i]) return i + 1;
    return 0;
}

double st_recip_rank(const uint8_t *rel, int n) {
    int r = st_first_relevant_rank(rel, n);
    return r ? 1.0 / r : 0.0;
}

int st_rank_of_positive(float positive, const float *negatives, int n_neg, int larger_is_better) {
    if (isnan(positive)) return n_neg + 1;
    int rank = 1;
    for (int j = 0; j < n_neg; j++) {
        float s = negatives[j];
        if (isnan(s)) continue;
        if (larger_is_better ? s >= positive : s <= positive) rank++;
    }
    return rank;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double st_median(double *v, long n) {
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void st_mean_std(const double *v, long n, double *mean, double *std) {
    double sum = 0;
    for (long i = 0; i < n; i++) sum += v[i];
    *mean = n > 0 ? sum / n : 0.0;
    double ss = 0;
    for (long i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}
