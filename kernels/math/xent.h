/*
 * xent.h: softmax cross-entropy with label smoothing, one row at a time, exactly as
 * torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps) defines it:
 *
 *   logp_j = z_j - logsumexp(z),   logsumexp(z) = max(z) + ln sum_j exp(z_j - max(z))
 *   loss   = (1 - eps) * (-logp_y) + (eps / K) * sum_j (-logp_j)
 *   target = (1 - eps) * onehot(y) + eps / K,   d loss / d z_j = softmax(z)_j - target_j
 *
 * The batch loss is the mean of the row losses (the caller divides, or passes scale = 1/N to
 * the gradient). Rows are (K) contiguous floats; labels are class indices in [0, K).
 * Called by kernels/cpu/xent.c (one row per loop iteration) and kernels/cuda (one row per
 * thread or block); both therefore share every formula here.
 */
#ifndef ST_MATH_XENT_H
#define ST_MATH_XENT_H

#include "defs.h"

/* max_j z_j of one row (K >= 1). */
ST_HD float st_xent_row_max(const float *ST_RESTRICT z, int k) {
    float m = z[0];
    for (int j = 1; j < k; j++) m = fmaxf(m, z[j]);
    return m;
}

/* Smoothed target probability of class j for a row whose label is `label`. */
ST_HD float st_xent_target(int j, int label, float smoothing, int k) {
    float off = smoothing / (float)k;
    return j == label ? (1.0f - smoothing) + off : off;
}

/* Loss of one row given its max, the sum of exp(z - max) and the sum of the shifted logits
 * z - max. Working in shifted logits keeps the smoothing term
 *   sum_j (-logp_j) = K * ln(sum_exp) - sum_j (z_j - max)
 * free of cancellation when all logits share a large offset. */
ST_HD float st_xent_row_loss(const float *ST_RESTRICT z, int k, int label, float smoothing,
                             float row_max, float sum_exp, float sum_shifted) {
    float log_sum = logf(sum_exp);
    float nll = log_sum - (z[label] - row_max);
    float smooth = (float)k * log_sum - sum_shifted;
    return (1.0f - smoothing) * nll + (smoothing / (float)k) * smooth;
}

/* Whole row: writes softmax probabilities (K) and returns the row loss. */
ST_HD float st_xent_row_forward(const float *ST_RESTRICT z, int k, int label, float smoothing,
                                float *ST_RESTRICT probs) {
    float row_max = st_xent_row_max(z, k);
    float sum_exp = 0.0f, sum_shifted = 0.0f;
    for (int j = 0; j < k; j++) {
        float shifted = z[j] - row_max;
        float e = expf(shifted);
        probs[j] = e;
        sum_exp += e;
        sum_shifted += shifted;
    }
    float inv = 1.0f / sum_exp;
    for (int j = 0; j < k; j++) probs[j] *= inv;
    return st_xent_row_loss(z, k, label, smoothing, row_max, sum_exp, sum_shifted);
}

/* Gradient of scale * row loss with respect to logit j. */
ST_HD float st_xent_grad(float prob, int j, int label, float smoothing, int k, float scale) {
    return scale * (prob - st_xent_target(j, label, smoothing, k));
}

#endif
