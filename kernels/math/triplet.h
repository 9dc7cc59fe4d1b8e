/*
 * triplet.h: the per-pair and per-anchor formulas of the triplet loss (docs/algorithms.md B),
 * shared by kernels/cpu/triplet.c and the CUDA kernels.
 *
 * Distances (B.3, B.4): Euclidean, D = sqrt(max(s, 0) + eps) with eps = 1e-12, where the
 * squared distance s comes from the expanded form ||x||^2 + ||y||^2 - 2 x.y (one GEMM for the
 * whole batch). The expanded form loses about 2^-24 * (||x||^2 + ||y||^2) of absolute accuracy,
 * which near s = 0 (duplicated images, collapse) is a large relative error (D ~ 1e-3 ||x||
 * instead of 1e-6). So every entry whose expanded s is below ST_TRIPLET_REFINE_RATIO times the
 * norm sum is recomputed as a sum of squared differences (st_triplet_refine_sq): then identical
 * rows give s = 0 exactly, D = 1e-6, and the gradient (x - y) / D = 0 is finite. The diagonal
 * is set to s = 0 exactly.
 *
 * Mining (batch hard, Hermans eq. 5): for anchor a, the hardest positive is the largest
 * D(a, p) over p != a with the same label, the hardest negative the smallest D(a, n) over
 * different labels. Ties go to the LOWER index (strict comparisons in index order), as
 * torch.max(dim) returns the first maximal index on CPU. An anchor without a positive or a
 * negative is invalid and takes no part in the loss.
 *
 * Per-term loss h(z), z = D_ap - D_an: hinge [m + z]_+ (derivative 1 when m + z > 0, else 0,
 * as ReLU's backward at 0) or soft margin softplus(z) (derivative sigmoid(z)); softplus is
 * PyTorch's: z for z > 20, log1p(exp(z)) otherwise.
 *
 * Gradient (B.5): a term with slope g on D(a, j) contributes g * (f_a - f_j) / D(a, j) to
 * dL/df_a and the opposite to dL/df_j (st_triplet_pair_grad).
 */
#ifndef ST_MATH_TRIPLET_H
#define ST_MATH_TRIPLET_H

#include <stdint.h>

#include "defs.h"

/* Entries with s < ratio * (||x||^2 + ||y||^2) are recomputed directly: there the expanded
 * form's relative error 2^-24 * (||x||^2 + ||y||^2) / s would exceed ~1.2e-6. */
#define ST_TRIPLET_REFINE_RATIO 0.125f

ST_HD float st_triplet_safe_dist(float s, float eps) { return sqrtf(fmaxf(s, 0.0f) + eps); }

ST_HD float st_triplet_expanded_sq(float norm_sq_x, float norm_sq_y, float dot) {
    return norm_sq_x + norm_sq_y - 2.0f * dot;
}

ST_HD int st_triplet_needs_refine(float s, float norm_sq_x, float norm_sq_y) {
    return s < ST_TRIPLET_REFINE_RATIO * (norm_sq_x + norm_sq_y);
}

/* ||x - y||^2 summed in index order (bit-identical for identical rows). */
ST_HD float st_triplet_refine_sq(const float *ST_RESTRICT x, const float *ST_RESTRICT y, int d) {
    float s = 0.0f;
    for (int k = 0; k < d; k++) {
        float diff = x[k] - y[k];
        s += diff * diff;
    }
    return s;
}

/* The distance of pair (i, j) from its expanded squared form, refined when needed. */
ST_HD float st_triplet_pair_dist(const float *ST_RESTRICT xi, const float *ST_RESTRICT xj, int d,
                                 int same_row, float norm_sq_i, float norm_sq_j, float dot,
                                 float eps) {
    if (same_row) return st_triplet_safe_dist(0.0f, eps);
    float s = st_triplet_expanded_sq(norm_sq_i, norm_sq_j, dot);
    if (st_triplet_needs_refine(s, norm_sq_i, norm_sq_j)) s = st_triplet_refine_sq(xi, xj, d);
    return st_triplet_safe_dist(s, eps);
}

/* Batch-hard mining of anchor a over one row of the distance matrix (N). Writes the hardest
 * positive and negative indices; returns 0 when the anchor has no positive or no negative. */
ST_HD int st_triplet_mine_row(const float *ST_RESTRICT dist_row, const int32_t *ST_RESTRICT labels,
                              int n, int a, int *pos, int *neg) {
    int best_pos = -1, best_neg = -1;
    for (int j = 0; j < n; j++) {
        if (j == a) continue;
        if (labels[j] == labels[a]) {
            if (best_pos < 0 || dist_row[j] > dist_row[best_pos]) best_pos = j;
        } else {
            if (best_neg < 0 || dist_row[j] < dist_row[best_neg]) best_neg = j;
        }
    }
    *pos = best_pos;
    *neg = best_neg;
    return best_pos >= 0 && best_neg >= 0;
}

/* PyTorch's softplus (beta 1, threshold 20). */
ST_HD float st_softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

ST_HD float st_sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* Is the term active (non-zero loss)? Soft-margin terms always are. */
ST_HD int st_triplet_active(float z, float margin, int soft_margin) {
    return soft_margin ? 1 : margin + z > 0.0f;
}

/* h(z): loss of one term, z = D_ap - D_an. */
ST_HD float st_triplet_term(float z, float margin, int soft_margin) {
    return soft_margin ? st_softplus(z) : fmaxf(margin + z, 0.0f);
}

/* h'(z). */
ST_HD float st_triplet_term_slope(float z, float margin, int soft_margin) {
    if (soft_margin) return st_sigmoid(z);
    return margin + z > 0.0f ? 1.0f : 0.0f;
}

/* d(slope * D(a, j)) / d f_a = coeff * (f_a - f_j) and the opposite for f_j, with
 * coeff = slope / D(a, j). A gather-style kernel (one output row per thread block) sums
 * coeff * (f_i - f_j) over the pairs touching row i with this same coefficient. */
ST_HD float st_triplet_pair_coeff(float slope, float dist) { return slope / dist; }

/* Gradient of slope * D(a, j) added to ga (w.r.t. f_a) and gj (w.r.t. f_j), both (d). */
ST_HD void st_triplet_pair_grad(float slope, float dist, const float *ST_RESTRICT fa,
                                const float *ST_RESTRICT fj, float *ST_RESTRICT ga,
                                float *ST_RESTRICT gj, int d) {
    float c = st_triplet_pair_coeff(slope, dist);
    for (int k = 0; k < d; k++) {
        float u = c * (fa[k] - fj[k]);
        ga[k] += u;
        gj[k] -= u;
    }
}

#endif
