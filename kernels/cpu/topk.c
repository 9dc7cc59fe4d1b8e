/*
 * topk.c: merge a tile of scores into running per-query top-k lists (backend.h topk_merge).
 *
 *   scores      (Q, tile)  row-major; column j is gallery row base + j
 *   best_scores (Q, k)     sorted best first, updated in place
 *   best_index  (Q, k)     int64 gallery rows; -1 marks an empty slot (score = worst)
 * Order: kernels/math/topk.h (better score, then lower index; NaN never enters).
 *
 * Per query row (rows are independent, so OpenMP splits the queries):
 *   1. scan the tile once, keeping only candidates that can beat the current threshold, which
 *      starts at the list's k-th entry; blocks of 32 scores are rejected at once by a
 *      vectorised comparison, so the common case costs a fraction of a cycle per score;
 *   2. whenever the candidate buffer fills up (capacity 2k, at least 256), partially select its
 *      k best (quickselect) and raise the threshold to the k-th of them, so for k << tile the
 *      buffer sees O(k log(tile/k)) pushes and the whole step costs one pass over the row;
 *   3. sort the surviving candidates (at most k) and merge them with the old list.
 * With k >= tile (full rankings) step 2 never triggers and the cost is one sort of the row.
 */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../math/topk.h"
#include "cpu_ops.h"

typedef struct {
    float score;
    int64_t index;
} topk_pair;

static int pair_compare_larger(const void *a, const void *b) {
    const topk_pair *x = a, *y = b;
    if (st_topk_before(x->score, x->index, y->score, y->index, 1)) return -1;
    if (st_topk_before(y->score, y->index, x->score, x->index, 1)) return 1;
    return 0;
}

static int pair_compare_smaller(const void *a, const void *b) {
    const topk_pair *x = a, *y = b;
    if (st_topk_before(x->score, x->index, y->score, y->index, 0)) return -1;
    if (st_topk_before(y->score, y->index, x->score, x->index, 0)) return 1;
    return 0;
}

static int pair_before(topk_pair a, topk_pair b, int larger_is_better) {
    return st_topk_before(a.score, a.index, b.score, b.index, larger_is_better);
}

static void pair_swap(topk_pair *a, topk_pair *b) {
    topk_pair t = *a;
    *a = *b;
    *b = t;
}

/* Rearrange p[0..n) so that p[0..k) are its k best pairs (in any order); n > k >= 1.
 * Quickselect with a median-of-three pivot; all pairs are distinct (distinct indices), so
 * every partition step makes progress. */
static void select_best(topk_pair *p, size_t n, size_t k, int larger) {
    size_t lo = 0, hi = n - 1; /* the k-th best (position k-1) lies in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pair_before(p[mid], p[lo], larger)) pair_swap(&p[mid], &p[lo]);
        if (pair_before(p[hi], p[lo], larger)) pair_swap(&p[hi], &p[lo]);
        if (pair_before(p[hi], p[mid], larger)) pair_swap(&p[hi], &p[mid]);
        topk_pair pivot = p[mid];
        pair_swap(&p[mid], &p[hi]);
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (pair_before(p[i], pivot, larger)) pair_swap(&p[i], &p[store++]);
        pair_swap(&p[store], &p[hi]); /* pivot at its final rank `store` */
        if (store == k - 1) return;
        if (store > k - 1) hi = store - 1;
        else lo = store + 1;
    }
}

/* Merge sorted candidates c[0..nc), nc <= k, into the sorted list (scores, index)[0..k),
 * using tmp (k). Since out = a + b < k, the old list is never exhausted first. */
static void merge_into_list(const topk_pair *c, size_t nc, int k, int larger, float *scores,
                            int64_t *index, topk_pair *tmp) {
    size_t a = 0, b = 0;
    for (int out = 0; out < k; out++) {
        topk_pair old = {scores[a], index[a]};
        if (b < nc && pair_before(c[b], old, larger)) tmp[out] = c[b++];
        else { tmp[out] = old; a++; }
    }
    for (int i = 0; i < k; i++) {
        scores[i] = tmp[i].index >= 0 ? tmp[i].score : st_topk_worst_score(larger);
        index[i] = tmp[i].index;
    }
}

/* 1 when some score of the block row[0..n) can pass the quick reject against thr (a branch-free
 * OR of comparisons the compiler vectorises; NaN compares false, as it must). */
static int block_may_pass(const float *row, int n, float thr, int larger) {
    int any = 0;
    if (larger)
        for (int t = 0; t < n; t++) any |= row[t] >= thr;
    else
        for (int t = 0; t < n; t++) any |= row[t] <= thr;
    return any;
}

/* Keep candidates in a buffer of `cap` pairs; when full, cut it to its k best. */
typedef struct {
    topk_pair *buf;
    size_t n, cap;
    int k, larger;
    float thr_score;   /* threshold = the stricter of the list's k-th entry and the buffer's */
    int64_t thr_index; /* k-th best; index -1 while the list has empty slots (accept all) */
} candidates;

static void candidates_push(candidates *c, float s, int64_t g) {
    if (!st_topk_may_enter(s, g, c->thr_score, c->thr_index, c->larger)) return;
    c->buf[c->n].score = s;
    c->buf[c->n].index = g;
    if (++c->n < c->cap) return;
    select_best(c->buf, c->n, (size_t)c->k, c->larger);
    c->n = (size_t)c->k;
    topk_pair kth = c->buf[0];
    for (size_t i = 1; i < c->n; i++)
        if (pair_before(kth, c->buf[i], c->larger)) kth = c->buf[i];
    c->thr_score = kth.score;
    c->thr_index = kth.index;
}

/* One query row. buf holds cap pairs, tmp holds k pairs (thread-private workspace). */
static void merge_row(const float *row, int tile, int64_t base, int k, int larger, float *scores,
                      int64_t *index, topk_pair *buf, size_t cap, topk_pair *tmp) {
    enum { BLOCK = 32 };
    candidates c = {buf, 0, cap, k, larger, scores[k - 1], index[k - 1]};
    for (int j0 = 0; j0 < tile; j0 += BLOCK) {
        int nb = tile - j0 < BLOCK ? tile - j0 : BLOCK;
        /* quick reject of a whole block that cannot beat the threshold score */
        if (c.thr_index >= 0 && !block_may_pass(row + j0, nb, c.thr_score, larger)) continue;
        for (int j = j0; j < j0 + nb; j++) candidates_push(&c, row[j], base + j);
    }
    if (c.n == 0) return;
    if (c.n > (size_t)k) {
        select_best(buf, c.n, (size_t)k, larger);
        c.n = (size_t)k;
    }
    qsort(buf, c.n, sizeof *buf, larger ? pair_compare_larger : pair_compare_smaller);
    merge_into_list(buf, c.n, k, larger, scores, index, tmp);
}

void cpu_topk_merge(st_backend *be, int q, int tile, int64_t base, int k, int larger_is_better,
                    const float *scores, float *best_scores, int64_t *best_index) {
    (void)be;
    ST_CHECK(q >= 0 && tile >= 0 && k >= 1 && base >= 0,
             "topk_merge: bad sizes q=%d tile=%d k=%d base=%lld", q, tile, k, (long long)base);
    if (q == 0 || tile == 0) return;
    size_t cap = (size_t)k * 2 > 256 ? (size_t)k * 2 : 256;
    if (cap > (size_t)tile) cap = (size_t)tile;
    if (cap <= (size_t)k) cap = (size_t)k + 1; /* room for one candidate past k before selecting */
    /* small merges (a few queries, narrow tiles) cost less than waking the thread team */
#pragma omp parallel if ((size_t)q * (size_t)tile >= 65536)
    {
        topk_pair *buf = ST_MALLOC(cap * sizeof *buf);
        topk_pair *tmp = ST_MALLOC((size_t)k * sizeof *tmp);
#pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < q; i++)
            merge_row(scores + (size_t)i * tile, tile, base, k, larger_is_better,
                      best_scores + (size_t)i * k, best_index + (size_t)i * k, buf, cap, tmp);
        free(buf);
        free(tmp);
    }
}
