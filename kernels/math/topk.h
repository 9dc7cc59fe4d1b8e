/*
 * topk.h: the one ordering of retrieval results, shared by the CPU merge (kernels/cpu/topk.c)
 * and the CUDA selection kernels, so both return the same lists for the same scores.
 *
 * A candidate is a pair (score, index), index = gallery row (int64). The order is:
 *   1. a real candidate (index >= 0) before an empty slot (index -1);
 *   2. a NaN score never enters a list: it ranks after every finite or infinite score;
 *   3. better score first (larger when larger_is_better, else smaller);
 *   4. equal scores: lower gallery index first (FAISS CPU's (value, id) rule, docs C.5).
 * This is a strict total order on distinct indices, so results never depend on the order in
 * which tiles or threads see the candidates.
 *
 * Empty slots hold index -1 and st_topk_worst_score(): -FLT_MAX when larger is better, +FLT_MAX
 * otherwise (FAISS's convention; finite so it survives JSON and text formats).
 */
#ifndef ST_MATH_TOPK_H
#define ST_MATH_TOPK_H

#include <float.h>
#include <stdint.h>

#include "defs.h"

ST_HD float st_topk_worst_score(int larger_is_better) {
    return larger_is_better ? -FLT_MAX : FLT_MAX;
}

/* 1 when (score_a, index_a) ranks strictly before (score_b, index_b). */
ST_HD int st_topk_before(float score_a, int64_t index_a, float score_b, int64_t index_b,
                         int larger_is_better) {
    if (index_a < 0) return 0;
    if (index_b < 0) return 1;
    if (score_a != score_a) return 0;         /* NaN a: never before anything */
    if (score_b != score_b) return 1;         /* NaN b: everything real comes first */
    if (score_a != score_b)
        return larger_is_better ? score_a > score_b : score_a < score_b;
    return index_a < index_b;
}

/* Fast rejection against the current k-th entry: 0 when (score, index) cannot enter a full list
 * whose last entry is (kth_score, kth_index). Same answer as !st_topk_before(...), but the
 * common case is one float comparison. */
ST_HD int st_topk_may_enter(float score, int64_t index, float kth_score, int64_t kth_index,
                            int larger_is_better) {
    if (kth_index < 0) return score == score;
    if (larger_is_better ? score > kth_score : score < kth_score) return 1;
    return score == kth_score && index < kth_index;
}

#endif
