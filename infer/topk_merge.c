/*
 * topk_merge.c: k-way merge of per-shard top-k lists (contract in infer/topk_merge.h), one
 * query at a time: every part's list is already in the final order, so the merge takes the best
 * head of the parts k times (n_parts comparisons per pick; n_parts is the rank count).
 */
#include "topk_merge.h"

#include <stdlib.h>

#include "../kernels/check.h"
#include "../kernels/math/topk.h"

/* The part whose next entry of query `query` ranks first; -1 when every part is exhausted. */
static int best_head(const st_topk_result *parts, int n_parts, const int *next, size_t row) {
    int best = -1;
    for (int p = 0; p < n_parts; p++) {
        if (next[p] >= parts[p].k) continue;
        size_t at = row + (size_t)next[p];
        if (best < 0) {
            best = p;
            continue;
        }
        size_t b = row + (size_t)next[best];
        if (st_topk_before(parts[p].key[at], parts[p].index[at], parts[best].key[b], parts[best].index[b], 1))
            best = p;
    }
    return best;
}

void st_topk_merge(const st_topk_result *parts, int n_parts, st_topk_result *out) {
    ST_CHECK(n_parts >= 1, "topk merge: no parts");
    const int q = parts[0].q, k = parts[0].k;
    for (int p = 1; p < n_parts; p++)
        ST_CHECK(parts[p].q == q && parts[p].k == k, "topk merge: part %d is (%d, %d), part 0 (%d, %d)", p,
                 parts[p].q, parts[p].k, q, k);
    out->q = q;
    out->k = k;
    size_t cells = (size_t)q * k;
    out->index = ST_MALLOC((cells ? cells : 1) * sizeof *out->index);
    out->score = ST_MALLOC((cells ? cells : 1) * sizeof *out->score);
    out->key = ST_MALLOC((cells ? cells : 1) * sizeof *out->key);
    int *next = ST_MALLOC((size_t)n_parts * sizeof *next);
    for (int i = 0; i < q; i++) {
        const size_t row = (size_t)i * k;
        for (int p = 0; p < n_parts; p++) next[p] = 0;
        for (int j = 0; j < k; j++) {
            /* k picks from parts of k entries each: a head always exists (an empty slot at worst) */
            int p = best_head(parts, n_parts, next, row);
            size_t at = row + (size_t)next[p]++;
            out->index[row + j] = parts[p].index[at];
            out->score[row + j] = parts[p].score[at];
            out->key[row + j] = parts[p].key[at];
        }
    }
    free(next);
}
