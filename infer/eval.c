/* eval.c: the evaluation protocols (contract in eval.h). */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/base/rng.h"
#include "../kernels/check.h"
#include "data/base/text.h"
#include "metrics.h"

#define DEFAULT_DEPTH 1000
#define MIN_DEPTH 100 /* map@100 is always reported */
#define RANK100_NEGATIVES 99

static const char *const protocol_names[] = {"split", "loo", "files", "rank100", NULL}; /* index = st_protocol */

int st_protocol_parse(const char *name, st_protocol *out) {
    /* "files" is implied by giving a queries file, never named on its own */
    static const char *const choosable[] = {"split", "loo", "rank100", NULL};
    char choices[64];
    if (st_name_index(choosable, name) < 0)
        return st_error_set("unknown protocol '%s' (expected %s)", name, st_names_join(choosable, choices, sizeof choices));
    *out = (st_protocol)st_name_index(protocol_names, name);
    return 0;
}

const char *st_protocol_name(st_protocol p) { return protocol_names[p]; }

void st_eval_defaults(st_eval_options *o) {
    memset(o, 0, sizeof *o);
    o->protocol = ST_PROTOCOL_SPLIT;
    o->metric = ST_METRIC_COSINE;
    o->k = 10;
    o->splits = 10;
    o->query_fraction = 0.2;
    o->qe_alpha = 3.0f;
    st_diffusion_defaults(&o->diffusion_options);
}

/* ---- metric table ----------------------------------------------------------------------- */

typedef struct {
    int n;
    st_metric_id id[ST_EVAL_MAX_METRICS];
} metric_table;

static void table_add(metric_table *t, st_eval_report *r, st_metric_family family, int cutoff) {
    ST_CHECK(t->n < ST_EVAL_MAX_METRICS, "too many metrics");
    t->id[t->n] = (st_metric_id){family, cutoff};
    st_metric_id_format(t->id[t->n], r->names[t->n], ST_EVAL_NAME_LEN);
    t->n++;
    r->n_metrics = t->n;
}

static void table_build(metric_table *t, st_eval_report *r, int k, int rank100) {
    int cutoffs[4] = {1, 5, 10, k}, n_cut = k == 1 || k == 5 || k == 10 ? 3 : 4;
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n_cut; i++) table_add(t, r, ST_MF_HIT, cutoffs[i]);
    if (!rank100) {
        for (int i = 0; i < n_cut; i++) table_add(t, r, ST_MF_PRECISION, cutoffs[i]);
        for (int i = 0; i < n_cut; i++) table_add(t, r, ST_MF_MAP_AT, cutoffs[i]);
        if (k != 100) table_add(t, r, ST_MF_MAP_AT, 100);
        table_add(t, r, ST_MF_MAP_R, 0);
        table_add(t, r, ST_MF_R_PRECISION, 0);
        table_add(t, r, ST_MF_MAP, 0);
    }
    table_add(t, r, ST_MF_MRR, 0);
    table_add(t, r, ST_MF_MEAN_RANK, 0);
    table_add(t, r, ST_MF_MEDIAN_RANK, 0);
}

/* Average the metrics of the included queries of one ranking into values (n_metrics); the
 * median rank is the median of the first relevant ranks instead. */
static void table_evaluate(const metric_table *t, const st_eval_ranking *rk, double *values,
                           long *included) {
    double *ranks = ST_MALLOC((size_t)(rk->q ? rk->q : 1) * sizeof(double));
    const st_metric_id first_rank = {ST_MF_MEAN_RANK, 0};
    long n = 0;
    for (int m = 0; m < t->n; m++) values[m] = 0;
    for (int i = 0; i < rk->q; i++) {
        long R = rk->n_relevant[i];
        if (R <= 0) continue;
        const uint8_t *rel = rk->rel + (size_t)i * rk->depth;
        for (int m = 0; m < t->n; m++)
            if (t->id[m].family != ST_MF_MEDIAN_RANK) values[m] += st_metric_of_query(t->id[m], rel, rk->depth, R);
        ranks[n++] = st_metric_of_query(first_rank, rel, rk->depth, R);
    }
    for (int m = 0; m < t->n; m++) {
        if (t->id[m].family == ST_MF_MEDIAN_RANK) values[m] = n ? st_median(ranks, n) : 0;
        else values[m] = n ? values[m] / n : 0;
    }
    *included = n;
    free(ranks);
}

/* ---- ranking --------------------------------------------------------------------------- */

static float *gather_rows(const st_embeddings *e, const int64_t *rows, long n) {
    float *x = ST_MALLOC((size_t)(n ? n : 1) * e->d * sizeof(float));
    for (long i = 0; i < n; i++)
        memcpy(x + (size_t)i * e->d, e->vectors + (size_t)rows[i] * e->d, (size_t)e->d * sizeof(float));
    return x;
}

/* Post-process and rank queries (q, d) against gallery (n, d) to `depth`; may replace *gallery,
 * *queries and *d with their PCA projections (the caller frees whatever it gets back). */
static int rank_queries(st_backend *be, const st_eval_options *o, float **gallery, long n,
                        float **queries, int q, int *d, const int64_t *self, int depth,
                        st_topk_result *out) {
    if (o->pca_dims > 0) {
        st_pca pca;
        if (st_pca_fit(*gallery, n, *d, o->pca_dims, o->whiten, &pca) != 0) return -1;
        float *g = ST_MALLOC((size_t)(n ? n : 1) * pca.d_out * sizeof(float));
        float *qq = ST_MALLOC((size_t)(q ? q : 1) * pca.d_out * sizeof(float));
        st_pca_apply(&pca, *gallery, n, g);
        st_pca_apply(&pca, *queries, q, qq);
        free(*gallery);
        free(*queries);
        *gallery = g;
        *queries = qq;
        *d = pca.d_out;
        st_pca_free(&pca);
    }
    if (o->qe > 0) {
        st_topk_options nn_opts = {o->metric, o->qe, 0, 0, self};
        st_topk_result nn;
        if (st_topk_search_matrix(be, &nn_opts, *queries, q, *gallery, n, *d, &nn) != 0) return -1;
        st_alpha_query_expansion(*queries, q, *gallery, *d, &nn, o->qe, o->qe_alpha, *queries);
        st_topk_result_free(&nn);
    }
    if (o->diffusion) {
        st_diffusion_search(be, &o->diffusion_options, *gallery, n, *d, *queries, q, self, depth, out);
        return 0;
    }
    st_topk_options opts = {o->metric, depth, 0, 0, self};
    return st_topk_search_matrix(be, &opts, *queries, q, *gallery, n, *d, out);
}

static int resolve_depth(const st_eval_options *o, long gallery_size, long max_relevant) {
    long depth = o->depth > 0 ? o->depth : DEFAULT_DEPTH;
    if (depth < o->k) depth = o->k;
    if (depth < MIN_DEPTH) depth = MIN_DEPTH;
    if (depth < max_relevant) depth = max_relevant;
    if (depth > gallery_size) depth = gallery_size;
    if (depth < o->k) depth = o->k;
    return (int)depth;
}

static void ranking_alloc(st_eval_ranking *rk, int q, int depth) {
    memset(rk, 0, sizeof *rk);
    rk->q = q;
    rk->depth = depth;
    size_t nq = (size_t)(q ? q : 1), total = nq * depth;
    rk->query_rows = ST_MALLOC(nq * sizeof(int64_t));
    rk->result_rows = ST_MALLOC(total * sizeof(int64_t));
    rk->score = ST_MALLOC(total * sizeof(float));
    rk->key = ST_MALLOC(total * sizeof(float));
    rk->rel = ST_CALLOC(total, 1);
    rk->n_relevant = ST_CALLOC(nq, sizeof(long));
    rk->query_labels = ST_MALLOC(nq * sizeof(int32_t));
}

static void ranking_free(st_eval_ranking *rk) {
    free(rk->query_rows);
    free(rk->result_rows);
    free(rk->score);
    free(rk->key);
    free(rk->rel);
    free(rk->n_relevant);
    free(rk->query_labels);
    free(rk->gallery_rows);
    memset(rk, 0, sizeof *rk);
}

/* One ranking experiment: queries (rows of qfile) against gallery (rows of gfile).
 * query_labels (Q) are already in the gallery's label space; self (Q) or NULL. */
typedef struct {
    const st_embeddings *gfile, *qfile;
    const int64_t *gallery_rows; long n_gallery;
    const int64_t *query_rows; int n_queries;
    const int32_t *query_labels;
    const int64_t *self;  /* (Q) position of the query in the gallery list, or NULL */
} experiment;

static int run_experiment(st_backend *be, const st_eval_options *o, const experiment *x,
                          st_eval_ranking *rk, int *depth_out) {
    int32_t max_label = -1;
    for (long i = 0; i < x->n_gallery; i++)
        if (x->gfile->labels[x->gallery_rows[i]] > max_label) max_label = x->gfile->labels[x->gallery_rows[i]];
    long *class_count = ST_CALLOC((size_t)max_label + 2, sizeof(long));
    for (long i = 0; i < x->n_gallery; i++)
        if (x->gfile->labels[x->gallery_rows[i]] >= 0) class_count[x->gfile->labels[x->gallery_rows[i]]]++;
    long max_relevant = 0;
    long *R = ST_MALLOC((size_t)(x->n_queries ? x->n_queries : 1) * sizeof(long));
    for (int i = 0; i < x->n_queries; i++) {
        int32_t l = x->query_labels[i];
        R[i] = l >= 0 && l <= max_label ? class_count[l] - (x->self && x->self[i] >= 0) : 0;
        if (R[i] > max_relevant) max_relevant = R[i];
    }
    free(class_count);
    int depth = resolve_depth(o, x->n_gallery, max_relevant);
    *depth_out = depth;

    int d = x->gfile->d;
    float *g = gather_rows(x->gfile, x->gallery_rows, x->n_gallery);
    float *q = gather_rows(x->qfile, x->query_rows, x->n_queries);
    st_topk_result res;
    int rc = rank_queries(be, o, &g, x->n_gallery, &q, x->n_queries, &d, x->self, depth, &res);
    free(g);
    free(q);
    if (rc != 0) {
        free(R);
        return -1;
    }
    ranking_alloc(rk, x->n_queries, depth);
    rk->excludes_self = x->self != NULL;
    rk->n_gallery = x->n_gallery;
    rk->gallery_rows = ST_MALLOC((size_t)(x->n_gallery ? x->n_gallery : 1) * sizeof(int64_t));
    memcpy(rk->gallery_rows, x->gallery_rows, (size_t)x->n_gallery * sizeof(int64_t));
    for (int i = 0; i < x->n_queries; i++) {
        rk->query_rows[i] = x->query_rows[i];
        rk->query_labels[i] = x->query_labels[i];
        rk->n_relevant[i] = R[i];
        for (int j = 0; j < depth; j++) {
            size_t at = (size_t)i * depth + j;
            int64_t gi = res.index[at];
            rk->result_rows[at] = gi >= 0 ? x->gallery_rows[gi] : -1;
            rk->score[at] = res.score[at];
            rk->key[at] = res.key[at];
            rk->rel[at] = gi >= 0 && x->query_labels[i] >= 0 &&
                          x->gfile->labels[x->gallery_rows[gi]] == x->query_labels[i];
        }
    }
    st_topk_result_free(&res);
    free(R);
    return 0;
}

/* ---- protocols ------------------------------------------------------------------------- */

static void shuffle(int64_t *v, long n, st_rng *rng) {
    for (long i = n - 1; i > 0; i--) {
        long j = (long)st_rng_below(rng, (uint64_t)i + 1);
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* Stratified split s: marks is_query (N). Rows are grouped by label with a counting sort, so
 * the cost is O(N) whatever the number of classes. */
static void stratified_split(const st_embeddings *e, double fraction, uint64_t seed, int s,
                             uint8_t *is_query) {
    int32_t max_label = -1;
    for (long i = 0; i < e->n; i++)
        if (e->labels[i] > max_label) max_label = e->labels[i];
    for (long i = 0; i < e->n; i++) is_query[i] = 0;
    long *start = ST_CALLOC((size_t)max_label + 2, sizeof(long)); /* class c: [start[c], start[c+1]) */
    for (long i = 0; i < e->n; i++)
        if (e->labels[i] >= 0) start[e->labels[i] + 1]++;
    for (int32_t c = 0; c <= max_label; c++) start[c + 1] += start[c];
    int64_t *members = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof(int64_t));
    long *fill = ST_MALLOC((size_t)(max_label + 1 > 0 ? max_label + 1 : 1) * sizeof(long));
    for (int32_t c = 0; c <= max_label; c++) fill[c] = start[c];
    for (long i = 0; i < e->n; i++)
        if (e->labels[i] >= 0) members[fill[e->labels[i]]++] = i; /* ascending rows per class */
    st_rng rng;
    st_rng_derive(&rng, seed, (uint64_t)s, 0x73706c6974ull /* "split" */);
    for (int32_t c = 0; c <= max_label; c++) {
        int64_t *class_rows = members + start[c];
        long n_c = start[c + 1] - start[c];
        long n_q = lround(fraction * (double)n_c);
        if (n_q > n_c - 1) n_q = n_c - 1;
        if (n_q <= 0) continue;
        shuffle(class_rows, n_c, &rng);
        for (long i = 0; i < n_q; i++) is_query[class_rows[i]] = 1;
    }
    free(start);
    free(fill);
    free(members);
}

static void finish_split(st_eval_report *r, const metric_table *t, int s, st_eval_ranking *rk,
                         int depth, long gallery_size) {
    long included = 0;
    table_evaluate(t, rk, r->per_split + (size_t)s * t->n, &included);
    r->queries = included;
    r->excluded = rk->q - included;
    r->gallery_size = gallery_size;
    r->depth = depth;
    if (s == 0) r->first = *rk;
    else ranking_free(rk);
}

static int protocol_split(st_backend *be, const st_eval_options *o, const st_embeddings *e,
                          st_eval_report *r, const metric_table *t) {
    if (o->query_fraction <= 0 || o->query_fraction >= 1)
        return st_error_set("--query-fraction %g must be between 0 and 1", o->query_fraction);
    uint8_t *is_query = ST_MALLOC((size_t)(e->n ? e->n : 1));
    int64_t *gallery = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof(int64_t));
    int64_t *queries = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof(int64_t));
    int32_t *qlabels = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof(int32_t));
    int rc = 0;
    for (int s = 0; rc == 0 && s < o->splits; s++) {
        stratified_split(e, o->query_fraction, o->seed, s, is_query);
        long ng = 0, nq = 0;
        for (long i = 0; i < e->n; i++) {
            if (is_query[i]) {
                qlabels[nq] = e->labels[i];
                queries[nq++] = i;
            } else {
                gallery[ng++] = i;
            }
        }
        if (nq == 0) {
            rc = st_error_set("split protocol: no class has 2 or more labelled rows, so there is "
                              "no query; HINT: check /labels");
            break;
        }
        experiment x = {e, e, gallery, ng, queries, (int)nq, qlabels, NULL};
        st_eval_ranking rk;
        int depth = 0;
        rc = run_experiment(be, o, &x, &rk, &depth);
        if (rc == 0) finish_split(r, t, s, &rk, depth, ng);
    }
    free(is_query);
    free(gallery);
    free(queries);
    free(qlabels);
    return rc;
}

static int protocol_loo(st_backend *be, const st_eval_options *o, const st_embeddings *e,
                        st_eval_report *r, const metric_table *t) {
    if (e->n > 0x7fffffffL) return st_error_set("leave-one-out: too many rows (%ld)", e->n);
    int64_t *rows = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof(int64_t));
    for (long i = 0; i < e->n; i++) rows[i] = i;
    experiment x = {e, e, rows, e->n, rows, (int)e->n, e->labels, rows};
    st_eval_ranking rk;
    int depth = 0;
    int rc = run_experiment(be, o, &x, &rk, &depth);
    if (rc == 0) finish_split(r, t, 0, &rk, depth, e->n);
    free(rows);
    return rc;
}

typedef struct {
    const char *name;
    int32_t label;
} named_label;

static int compare_named(const void *a, const void *b) {
    return strcmp(((const named_label *)a)->name, ((const named_label *)b)->name);
}

/* Query labels of the query file in the gallery file's label space (-1: no such class): by class
 * name when both files have names (each query class looked up once in the sorted gallery
 * names), else by number. */
static int32_t *map_labels(const st_embeddings *gallery, const st_embeddings *queries) {
    int32_t *out = ST_MALLOC((size_t)(queries->n ? queries->n : 1) * sizeof(int32_t));
    if (!gallery->label_names || !queries->label_names) {
        memcpy(out, queries->labels, (size_t)queries->n * sizeof(int32_t));
        return out;
    }
    int ng = gallery->n_label_names, nq = queries->n_label_names;
    named_label *sorted = ST_MALLOC((size_t)(ng ? ng : 1) * sizeof *sorted);
    for (int c = 0; c < ng; c++) sorted[c] = (named_label){gallery->label_names[c], c};
    qsort(sorted, (size_t)ng, sizeof *sorted, compare_named);
    int32_t *class_map = ST_MALLOC((size_t)(nq ? nq : 1) * sizeof(int32_t));
    for (int c = 0; c < nq; c++) {
        named_label key = {queries->label_names[c], -1};
        const named_label *hit = bsearch(&key, sorted, (size_t)ng, sizeof *sorted, compare_named);
        class_map[c] = hit ? hit->label : -1;
    }
    for (long i = 0; i < queries->n; i++)
        out[i] = queries->labels[i] >= 0 ? class_map[queries->labels[i]] : -1;
    free(sorted);
    free(class_map);
    return out;
}

static int protocol_files(st_backend *be, const st_eval_options *o, const st_embeddings *g,
                          const st_embeddings *q, st_eval_report *r, const metric_table *t) {
    if (q->n > 0x7fffffffL) return st_error_set("too many queries (%ld)", q->n);
    int64_t *grows = ST_MALLOC((size_t)(g->n ? g->n : 1) * sizeof(int64_t));
    int64_t *qrows = ST_MALLOC((size_t)(q->n ? q->n : 1) * sizeof(int64_t));
    for (long i = 0; i < g->n; i++) grows[i] = i;
    for (long i = 0; i < q->n; i++) qrows[i] = i;
    int32_t *qlabels = map_labels(g, q);
    experiment x = {g, q, grows, g->n, qrows, (int)q->n, qlabels, NULL};
    st_eval_ranking rk;
    int depth = 0;
    int rc = run_experiment(be, o, &x, &rk, &depth);
    if (rc == 0) finish_split(r, t, 0, &rk, depth, g->n);
    free(grows);
    free(qrows);
    free(qlabels);
    return rc;
}

typedef struct {
    double key;
    int is_positive;
    int64_t row;
    float score;
} candidate;

/* Sort by key descending; on equal keys negatives first (the pessimistic rank), then row. */
static int compare_candidate(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    if (x->is_positive != y->is_positive) return x->is_positive - y->is_positive;
    return (x->row > y->row) - (x->row < y->row);
}

static void score_pair(const float *a, const float *b, int d, st_metric m, double *key, float *score) {
    double dot = 0, na = 0, nb = 0, l2 = 0;
    for (int j = 0; j < d; j++) {
        dot += (double)a[j] * b[j];
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
        l2 += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    }
    if (m == ST_METRIC_L2) {
        *score = (float)sqrt(l2);
        *key = -sqrt(l2);
    } else {
        *key = m == ST_METRIC_IP ? dot : (na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0.0);
        *score = (float)*key;
    }
}

static int protocol_rank100(const st_eval_options *o, const st_embeddings *e, st_eval_report *r,
                            const metric_table *t) {
    if (o->qe > 0 || o->diffusion)
        return st_error_set("rank100 protocol: --qe and --diffusion rank a gallery and do not "
                            "apply to 100 sampled candidates; HINT: use --protocol split or loo");
    if (e->n > 0x7fffffffL) return st_error_set("rank100: too many rows (%ld)", e->n);
    float *x = e->vectors;
    int d = e->d;
    float *projected = NULL;
    if (o->pca_dims > 0) {
        st_pca pca;
        if (st_pca_fit(e->vectors, e->n, e->d, o->pca_dims, o->whiten, &pca) != 0) return -1;
        projected = ST_MALLOC((size_t)e->n * pca.d_out * sizeof(float));
        st_pca_apply(&pca, e->vectors, e->n, projected);
        x = projected;
        d = pca.d_out;
        st_pca_free(&pca);
    }
    int32_t max_label = -1;
    for (long i = 0; i < e->n; i++)
        if (e->labels[i] > max_label) max_label = e->labels[i];
    long *class_count = ST_CALLOC((size_t)max_label + 2, sizeof(long));
    for (long i = 0; i < e->n; i++)
        if (e->labels[i] >= 0) class_count[e->labels[i]]++;
    const int n_cand = RANK100_NEGATIVES + 1;
    st_eval_ranking rk;
    ranking_alloc(&rk, (int)e->n, n_cand);
    candidate c[RANK100_NEGATIVES + 1];
    st_rng rng;
    st_rng_derive(&rng, o->seed, 0, 0x72616e6b313030ull /* "rank100" */);
    for (long i = 0; i < e->n; i++) {
        int32_t l = e->labels[i];
        rk.query_rows[i] = i;
        rk.query_labels[i] = l;
        for (int j = 0; j < n_cand; j++) rk.result_rows[(size_t)i * n_cand + j] = -1;
        if (l < 0 || class_count[l] < 2 || e->n - class_count[l] < RANK100_NEGATIVES) continue;
        int64_t pos;
        do pos = (int64_t)st_rng_below(&rng, (uint64_t)e->n);
        while (pos == i || e->labels[pos] != l);
        c[0] = (candidate){0, 1, pos, 0};
        for (int j = 1; j < n_cand; j++) {
            int64_t neg;
            int taken;
            do {
                neg = (int64_t)st_rng_below(&rng, (uint64_t)e->n);
                taken = e->labels[neg] == l;
                for (int m = 1; m < j && !taken; m++) taken = c[m].row == neg;
            } while (taken);
            c[j] = (candidate){0, 0, neg, 0};
        }
        for (int j = 0; j < n_cand; j++)
            score_pair(x + (size_t)i * d, x + (size_t)c[j].row * d, d, o->metric, &c[j].key, &c[j].score);
        qsort(c, (size_t)n_cand, sizeof c[0], compare_candidate);
        rk.n_relevant[i] = 1;
        for (int j = 0; j < n_cand; j++) {
            size_t at = (size_t)i * n_cand + j;
            rk.result_rows[at] = c[j].row;
            rk.score[at] = c[j].score;
            rk.key[at] = (float)c[j].key;
            rk.rel[at] = (uint8_t)c[j].is_positive;
        }
    }
    free(class_count);
    free(projected);
    finish_split(r, t, 0, &rk, n_cand, e->n); /* "gallery": the pool the candidates come from */
    return 0;
}

int st_eval_run(st_backend *be, const st_eval_options *o, const st_embeddings *data,
                const char *data_path, const st_embeddings *queries, const char *queries_path,
                st_eval_report *out) {
    memset(out, 0, sizeof *out);
    if (o->k < 1) return st_error_set("-k must be >= 1");
    int labelled = 0;
    for (long i = 0; i < data->n && !labelled; i++) labelled = data->labels[i] >= 0;
    if (!labelled)
        return st_error_set("%s: /labels: no labelled row; evaluation needs class labels; HINT: "
                            "embed a folder-per-class dataset or a manifest with a label column "
                            "(`simtune search` ranks unlabelled files)",
                            data_path);
    if (queries && st_embeddings_check_dims(data_path, data->d, queries_path, queries->d) != 0)
        return -1;
    metric_table t;
    table_build(&t, out, o->k, o->protocol == ST_PROTOCOL_RANK100);
    out->splits = o->protocol == ST_PROTOCOL_SPLIT ? o->splits : 1;
    if (out->splits < 1) return st_error_set("--splits must be >= 1");
    out->per_split = ST_CALLOC((size_t)out->splits * t.n, sizeof(double));
    int rc;
    switch (o->protocol) {
    case ST_PROTOCOL_SPLIT: rc = protocol_split(be, o, data, out, &t); break;
    case ST_PROTOCOL_LOO: rc = protocol_loo(be, o, data, out, &t); break;
    case ST_PROTOCOL_FILES: rc = protocol_files(be, o, data, queries, out, &t); break;
    default: rc = protocol_rank100(o, data, out, &t); break;
    }
    if (rc != 0) {
        st_eval_report_free(out);
        return -1;
    }
    double *column = ST_MALLOC((size_t)out->splits * sizeof(double));
    for (int m = 0; m < t.n; m++) {
        for (int s = 0; s < out->splits; s++) column[s] = out->per_split[(size_t)s * t.n + m];
        st_mean_std(column, out->splits, &out->mean[m], &out->std[m]);
    }
    free(column);
    return 0;
}

void st_eval_report_free(st_eval_report *r) {
    free(r->per_split);
    ranking_free(&r->first);
    memset(r, 0, sizeof *r);
}

double st_eval_report_metric(const st_eval_report *r, const char *name, double *std) {
    for (int i = 0; i < r->n_metrics; i++)
        if (strcmp(r->names[i], name) == 0) {
            *std = r->std[i];
            return r->mean[i];
        }
    *std = NAN;
    return NAN;
}
