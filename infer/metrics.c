/* metrics.c: per-query retrieval metrics (definitions and conventions in metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"

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

/* ---- the metric registry ---------------------------------------------------------------- */

typedef struct {
    st_metric_family family;
    const char *name;  /* canonical; the @K families are "<name>@<k>" */
    int takes_k;
    int in_validation; /* listed in validation.metrics' hint, in this order */
    const char *alias; /* a second accepted spelling, or NULL */
} metric_entry;

static const metric_entry registry[] = {
    {ST_MF_HIT, "hit", 1, 1, NULL},
    {ST_MF_MAP_AT, "map", 1, 1, NULL},
    {ST_MF_PRECISION, "precision", 1, 1, NULL},
    {ST_MF_RECALL, "recall", 1, 1, NULL},
    {ST_MF_MAP_R, "map@r", 0, 1, "map@R"},
    {ST_MF_MRR, "mrr", 0, 1, NULL},
    {ST_MF_R_PRECISION, "r-precision", 0, 0, NULL},
    {ST_MF_MAP, "map", 0, 0, NULL},
    {ST_MF_MEAN_RANK, "mean_rank", 0, 0, NULL},
    {ST_MF_MEDIAN_RANK, "median_rank", 0, 0, NULL},
};
enum { N_REGISTRY = sizeof registry / sizeof registry[0], MAX_K = 1000000 };

static const metric_entry *entry_of(st_metric_family family) {
    for (int i = 0; i < N_REGISTRY; i++)
        if (registry[i].family == family) return &registry[i];
    ST_CHECK(0, "metric family %d is not in the registry", (int)family);
    return NULL;
}

/* The K of "<name>@K": strtoll base 10 over the whole rest, in [1, MAX_K]; -1 otherwise. */
static int cutoff_of(const char *text) {
    if (!text[0]) return -1;
    char *end;
    errno = 0;
    long long k = strtoll(text, &end, 10);
    return errno || *end || k < 1 || k > MAX_K ? -1 : (int)k;
}

int st_metric_id_parse(const char *name, st_metric_id *out) {
    for (int i = 0; i < N_REGISTRY; i++) {
        const metric_entry *e = &registry[i];
        size_t len = strlen(e->name);
        int k = 0;
        if (e->takes_k) {
            if (strncmp(name, e->name, len) != 0 || name[len] != '@' || (k = cutoff_of(name + len + 1)) < 0) continue;
        } else if (strcmp(name, e->name) != 0 && !(e->alias && strcmp(name, e->alias) == 0)) {
            continue;
        }
        *out = (st_metric_id){e->family, k};
        return 0;
    }
    return -1;
}

void st_metric_id_format(st_metric_id id, char *buf, size_t size) {
    const metric_entry *e = entry_of(id.family);
    if (e->takes_k) snprintf(buf, size, "%s@%d", e->name, id.k);
    else snprintf(buf, size, "%s", e->name);
}

int st_metric_in_validation(st_metric_family family) { return entry_of(family)->in_validation; }

const char *st_metric_validation_names(void) {
    static char names[128];
    if (names[0]) return names;
    size_t used = 0;
    for (int i = 0; i < N_REGISTRY; i++) {
        const metric_entry *e = &registry[i];
        if (!e->in_validation) continue;
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s%s", used ? ", " : "",
                                 e->alias ? e->alias : e->name, e->takes_k ? "@K" : "");
    }
    return names;
}

static double rank_or_past_depth(const uint8_t *rel, int n) {
    int r = st_first_relevant_rank(rel, n);
    return r ? r : n + 1;
}

double st_metric_of_query(st_metric_id id, const uint8_t *rel, int n, long n_relevant) {
    switch (id.family) {
    case ST_MF_HIT:
    case ST_MF_RECALL: return st_hit_at(rel, n, id.k);
    case ST_MF_PRECISION: return st_precision_at(rel, n, id.k);
    case ST_MF_MAP_AT: return st_ap_at(rel, n, id.k, n_relevant);
    case ST_MF_MAP_R: return st_map_at_r(rel, n, n_relevant);
    case ST_MF_R_PRECISION: return st_r_precision(rel, n, n_relevant);
    case ST_MF_MAP: return st_ap_at(rel, n, 0, n_relevant);
    case ST_MF_MRR: return st_recip_rank(rel, n); /* 0 beyond the depth, as trec_eval */
    case ST_MF_MEAN_RANK:
    case ST_MF_MEDIAN_RANK: return rank_or_past_depth(rel, n);
    }
    ST_CHECK(0, "metric family %d has no definition", (int)id.family);
    return 0;
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
