/*
 * triplet.h: the per-pair and per-anchor formulas of the triplet loss (docs/algorithms.md B),
 * shared by kernels/cpu/triplet.c and the CUDA kernels.
 *
 * Distances (B.3): Euclidean, D = sqrt(s + eps) with eps = 1e-12, where s = ||x - y||^2 is
 * summed directly from the differences (st_triplet_pair_sq), never from the expanded form
 * ||x||^2 + ||y||^2 - 2 x.y of a GEMM. Why: the expanded form's rounding depends on where a row
 * sits in the GEMM's register tiles, so two identical rows (the same image drawn twice, which PK
 * sampling with repetition makes common) got distances to a third row that differed in the last
 * bit. Mining then broke the exact tie by rounding instead of by index, sending the gradient of
 * that term to the other copy: a 10% gradient error under OpenBLAS's Haswell kernel and none
 * under SkylakeX. The direct sum is a pure function of the two rows' values, in a fixed order
 * (ST_TRIPLET_LANES partial sums over k = l, l + LANES, ..., combined pairwise), so identical
 * rows give bit-identical distances on any kernel, D(x, y) == D(y, x) bit for bit ((x - y)^2 ==
 * (y - x)^2), D(x, x) = sqrt(eps) exactly, and there is no cancellation near s = 0: relative
 * error ~ (d / LANES + log2 LANES) * 2^-24, against 2^-24 (||x||^2 + ||y||^2) / s for the
 * expanded form. Cost O(N^2 D), the GEMM's, and negligible next to the network for PK batches.
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

#define ST_TRIPLET_LANES 16 /* independent partial sums: vectorisable, fixed order */

ST_HD float st_triplet_safe_dist(float s, float eps) { return sqrtf(fmaxf(s, 0.0f) + eps); }

/* ||x - y||^2 in the fixed lane order above: depends only on the values of x and y. */
ST_HD float st_triplet_pair_sq(const float *ST_RESTRICT x, const float *ST_RESTRICT y, int d) {
    float acc[ST_TRIPLET_LANES];
    for (int l = 0; l < ST_TRIPLET_LANES; l++) acc[l] = 0.0f;
    int k0 = 0;
    for (; k0 + ST_TRIPLET_LANES <= d; k0 += ST_TRIPLET_LANES)
        for (int l = 0; l < ST_TRIPLET_LANES; l++) {
            float diff = x[k0 + l] - y[k0 + l];
            acc[l] += diff * diff;
        }
    for (int l = 0; k0 + l < d; l++) {
        float diff = x[k0 + l] - y[k0 + l];
        acc[l] += diff * diff;
    }
    for (int width = ST_TRIPLET_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++) acc[l] += acc[l + width];
    return acc[0];
}

/* D(x, y) of two rows of length d. */
ST_HD float st_triplet_pair_dist(const float *ST_RESTRICT x, const float *ST_RESTRICT y, int d,
                                 float eps) {
    return st_triplet_safe_dist(st_triplet_pair_sq(x, y, d), eps);
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
