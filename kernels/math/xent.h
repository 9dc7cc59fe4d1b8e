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
 * Called by kernels/cpu/xent.c (one row per loop iteration, st_xent_row_forward) and
 * kernels/cuda/xent.cu (one row per block, the same parts per thread); both therefore share
 * every formula here.
 */
#ifndef ST_MATH_XENT_H
#define ST_MATH_XENT_H

#include "defs.h"

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

/*
 * The softmax row in parts. Each part covers the entries j = first, first + step, ... < k: the
 * whole row for the CPU (first 0, step 1), one thread's share of it for a CUDA block (first =
 * thread, step = block size), whose per-thread results the block then combines (max, and the sums
 * in double). Sums within a part are float, in j order.
 */

/* max of the part's logits (-inf for an empty part). */
ST_HD float st_xent_max_part(const float *ST_RESTRICT z, int k, int first, int step) {
    float m = -INFINITY;
    for (int j = first; j < k; j += step) m = fmaxf(m, z[j]);
    return m;
}

/* probs[j] = exp(z_j - row_max) over the part; *sum_exp and *sum_shifted receive the sums of
 * those terms and of the shifted logits z_j - row_max. */
ST_HD void st_xent_exp_part(const float *ST_RESTRICT z, int k, float row_max, int first, int step,
                            float *ST_RESTRICT probs, float *sum_exp, float *sum_shifted) {
    float se = 0.0f, ss = 0.0f;
    for (int j = first; j < k; j += step) {
        float shifted = z[j] - row_max;
        float e = expf(shifted);
        probs[j] = e;
        se += e;
        ss += shifted;
    }
    *sum_exp = se;
    *sum_shifted = ss;
}

/* probs[j] *= inv over the part (inv = 1 / the row's sum of exp terms). */
ST_HD void st_xent_scale_part(float *probs, int k, float inv, int first, int step) {
    for (int j = first; j < k; j += step) probs[j] *= inv;
}

/* Whole row: writes softmax probabilities (K) and returns the row loss. */
ST_HD float st_xent_row_forward(const float *ST_RESTRICT z, int k, int label, float smoothing,
                                float *ST_RESTRICT probs) {
    float row_max = st_xent_max_part(z, k, 0, 1);
    float sum_exp, sum_shifted;
    st_xent_exp_part(z, k, row_max, 0, 1, probs, &sum_exp, &sum_shifted);
    st_xent_scale_part(probs, k, 1.0f / sum_exp, 0, 1);
    return st_xent_row_loss(z, k, label, smoothing, row_max, sum_exp, sum_shifted);
}

/* Top-1 class of a row for the accuracy statistic: the first largest logit (ties to the lower
 * class, strict comparisons in class order; torch.argmax's tie rule). */
ST_HD int st_xent_top1(const float *ST_RESTRICT z, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[best]) best = j;
    return best;
}

/* The part's first entry equal to the row's max, or k when none: the CUDA block takes the
 * smallest over its threads, which for a row of finite logits is st_xent_top1. */
ST_HD int st_xent_top1_part(const float *ST_RESTRICT z, int k, float row_max, int first, int step) {
    for (int j = first; j < k; j += step)
        if (z[j] == row_max) return j;
    return k;
}

/* Gradient of scale * row loss with respect to logit j. */
ST_HD float st_xent_grad(float prob, int j, int label, float smoothing, int k, float scale) {
    return scale * (prob - st_xent_target(j, label, smoothing, k));
}

#endif
