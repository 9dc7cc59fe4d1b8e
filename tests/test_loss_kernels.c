/*
 * test_loss_kernels.c: the CPU triplet and cross-entropy kernels on cases checked by hand
 * (docs/algorithms.md B.5 and B.7), by central finite differences, and on the degenerate
 * inputs training produces: exact ties, duplicated rows, total collapse, anchors without a
 * positive. No oracle needed (label cpu); tests/test_losses_torch.c compares with PyTorch.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/math/triplet.h"
#include "test_util.h"

static st_triplet_stats run_triplet(int n, int d, int batch_all, int soft, float margin,
                                    const float *emb, const int32_t *labels, float *demb) {
    st_triplet_desc desc = {.n = n, .d = d, .batch_all = batch_all, .soft_margin = soft,
                            .margin = margin, .eps = 1e-12f};
    float *dist = malloc(sizeof(float) * (size_t)n * n);
    st_triplet_stats stats;
    cpu_triplet_loss(NULL, &desc, emb, labels, dist, demb, &stats);
    free(dist);
    return stats;
}

/* B.5: P = 2, K = 2, D = 2, m = 0.2. Table values have 6 decimals: atol 1e-6 covers their
 * rounding (5e-7) plus float32 error (~1e-7 on values of order 1). */
static void worked_example(void) {
    const float emb[8] = {0, 0, 1, 0, 0, 2, 1.5f, 0};
    const int32_t labels[4] = {0, 0, 1, 1};
    const float hinge_grad[8] = {-0.25f, 0.25f, 0.75f, 0, -0.30f, 0.15f, -0.20f, -0.40f};
    const float soft_grad[8] = {-0.155615f, 0.155615f, 0.625814f, 0,
                                -0.225488f, 0.145036f, -0.244711f, -0.300651f};
    float demb[8];
    st_triplet_stats s = run_triplet(4, 2, 0, 0, 0.2f, emb, labels, demb);
    TEST_CHECK(fabsf(s.loss - 0.9f) <= 1e-6f, "B.5 hinge loss %.7f, expected 0.9", s.loss);
    TEST_CHECK(s.active_fraction == 0.75f, "B.5 hinge: 3 of 4 anchors active, got %g",
               s.active_fraction);
    /* mean hardest positive (1 + 1 + 2.5 + 2.5) / 4, hardest negative (1.5 + .5 + 2 + .5) / 4 */
    TEST_CHECK(fabsf(s.mean_pos - 1.75f) <= 1e-6f && fabsf(s.mean_neg - 1.125f) <= 1e-6f,
               "B.5 mean distances %g %g, expected 1.75 1.125", s.mean_pos, s.mean_neg);
    TEST_CLOSE("B.5 hinge gradient", demb, hinge_grad, 8, 1e-6, 0);

    s = run_triplet(4, 2, 0, 1, 0.0f, emb, labels, demb);
    TEST_CHECK(fabsf(s.loss - 1.137290f) <= 1e-6f, "B.5 soft loss %.7f, expected 1.137290",
               s.loss);
    TEST_CHECK(s.active_fraction == 1.0f, "soft margin: every anchor active");
    TEST_CLOSE("B.5 soft gradient", demb, soft_grad, 8, 1e-6, 0);

    /* Batch all, hinge, by hand: 8 triplets (a, p, n); active m + d_ap - d_an > 0:
     * (1,0,3) 0.7, (2,3,0) 0.7, (2,3,1) 2.7 - sqrt(5) = 0.463932, (3,2,0) 1.2, (3,2,1) 2.2;
     * mean over the 5 active = 5.263932 / 5 = 1.0527864. */
    s = run_triplet(4, 2, 1, 0, 0.2f, emb, labels, demb);
    TEST_CHECK(fabsf(s.loss - 1.0527864f) <= 1e-6f, "B.5 batch-all loss %.7f, expected 1.0527864",
               s.loss);
    TEST_CHECK(s.active_fraction == 5.0f / 8.0f, "batch all: 5 of 8 triplets active, got %g",
               s.active_fraction);
}

/* B.7 and the same logits with smoothing 0.1 by hand: -logp = (0.407606, 1.407606, 2.407606),
 * loss = 0.9 * 0.407606 + 0.1 / 3 * 4.222818 = 0.507606, target = (0.933333, 0.033333,
 * 0.033333). Values have 6 decimals: atol 1e-6. */
static void xent_example(void) {
    const float logits[3] = {2, 1, 0};
    const int32_t label[1] = {0};
    const float grad_plain[3] = {-0.334759f, 0.244728f, 0.090031f};
    const float grad_smooth[3] = {-0.268092f, 0.211395f, 0.056698f};
    float probs[3], loss, dlogits[3];
    st_xent_stats stats;
    cpu_xent_forward(NULL, 1, 3, logits, label, 0.0f, probs, &loss, &stats);
    cpu_xent_backward(NULL, 1, 3, probs, label, 0.0f, 1.0f, dlogits);
    TEST_CHECK(fabsf(loss - 0.407606f) <= 1e-6f, "B.7 loss %.7f, expected 0.407606", loss);
    TEST_CLOSE("B.7 gradient", dlogits, grad_plain, 3, 1e-6, 0);
    cpu_xent_forward(NULL, 1, 3, logits, label, 0.1f, probs, &loss, &stats);
    cpu_xent_backward(NULL, 1, 3, probs, label, 0.1f, 1.0f, dlogits);
    TEST_CHECK(fabsf(loss - 0.507606f) <= 1e-6f, "smoothed loss %.7f, expected 0.507606", loss);
    TEST_CHECK(stats.loss_sum == (double)loss && stats.correct == 1, "stats %g %g, expected %g 1",
               stats.loss_sum, stats.correct, (double)loss);
    TEST_CLOSE("smoothed gradient", dlogits, grad_smooth, 3, 1e-6, 0);
}

/* xent_forward's stats: the row losses added in row order, and top-1 hits with ties to the lower
 * class (row 0 ties classes 1 and 2: label 1 hits, row 1 with label 2 does not). */
static void xent_stats_ties(void) {
    const float logits[6] = {1, 3, 3, 1, 3, 3};
    const int32_t labels[2] = {1, 2};
    float probs[6], rows[2];
    st_xent_stats stats;
    cpu_xent_forward(NULL, 2, 3, logits, labels, 0.0f, probs, rows, &stats);
    TEST_CHECK(stats.correct == 1, "top-1 hits %g, expected 1 (ties to the lower class)", stats.correct);
    TEST_CHECK(stats.loss_sum == (double)rows[0] + (double)rows[1], "loss_sum %.17g", stats.loss_sum);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rand_normal(void) { /* Box-Muller over a xorshift generator: deterministic */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        u[i] = ((rng_state >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]));
}

/* Central differences of the float32 loss with h = 1e-3: rounding contributes about
 * 6e-8 * |L| / h ~ 1e-4 absolute per component and truncation O(h^2); on gradients of size
 * ~0.1 that is a relative error by norm of a few 1e-3, so 1e-2 is the bound. A wrong sign,
 * a missing term or a wrong mean is off by >= 0.1. */
static void triplet_finite_differences(int batch_all, int soft) {
    enum { N = 12, D = 6 };
    float emb[N * D], demb[N * D], scratch[N * D], numeric[N * D];
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (int32_t)(i % 4);
    for (int i = 0; i < N * D; i++) emb[i] = rand_normal();
    const float margin = 1.0f, h = 1e-3f;
    run_triplet(N, D, batch_all, soft, margin, emb, labels, demb);
    for (int i = 0; i < N * D; i++) {
        float keep = emb[i];
        emb[i] = keep + h;
        float up = run_triplet(N, D, batch_all, soft, margin, emb, labels, scratch).loss;
        emb[i] = keep - h;
        float down = run_triplet(N, D, batch_all, soft, margin, emb, labels, scratch).loss;
        emb[i] = keep;
        numeric[i] = (up - down) / (2 * h);
    }
    double rel = test_rel_error(demb, numeric, N * D);
    TEST_CHECK(rel <= 1e-2, "triplet finite differences (all=%d soft=%d): rel error %.3g",
               batch_all, soft, rel);
    printf("triplet finite differences all=%d soft=%d: rel error %.2e\n", batch_all, soft, rel);
}

/* Same bound and reasoning as the triplet (loss values ~2, gradients ~0.1). */
static void xent_finite_differences(float smoothing) {
    enum { N = 4, K = 7 };
    float logits[N * K], probs[N * K], rows[N], dlogits[N * K], numeric[N * K];
    int32_t labels[N] = {0, 3, 6, 3};
    for (int i = 0; i < N * K; i++) logits[i] = 2 * rand_normal();
    st_xent_stats stats;
    cpu_xent_forward(NULL, N, K, logits, labels, smoothing, probs, rows, &stats);
    cpu_xent_backward(NULL, N, K, probs, labels, smoothing, 1.0f / N, dlogits);
    const float h = 1e-3f;
    for (int i = 0; i < N * K; i++) {
        float keep = logits[i], sums[2];
        for (int side = 0; side < 2; side++) {
            logits[i] = keep + (side ? -h : h);
            cpu_xent_forward(NULL, N, K, logits, labels, smoothing, probs, rows, &stats);
            sums[side] = (rows[0] + rows[1] + rows[2] + rows[3]) / N;
        }
        logits[i] = keep;
        numeric[i] = (sums[0] - sums[1]) / (2 * h);
    }
    double rel = test_rel_error(dlogits, numeric, N * K);
    TEST_CHECK(rel <= 1e-2, "xent finite differences (smoothing %g): rel error %.3g", smoothing,
               rel);
}

/* Ties go to the lower index, for the hardest positive and the hardest negative. */
static void mining_ties(void) {
    const float row[6] = {1e-6f, 5, 5, 10, 10, 3};
    const int32_t labels[6] = {0, 0, 0, 1, 1, 0};
    int pos, neg;
    TEST_CHECK(st_triplet_mine_row(row, labels, 6, 0, &pos, &neg) == 1, "anchor 0 is valid");
    TEST_CHECK(pos == 1 && neg == 3, "ties: hardest positive %d (want 1), negative %d (want 3)",
               pos, neg);
    const int32_t lonely[3] = {0, 1, 1};
    TEST_CHECK(st_triplet_mine_row(row, lonely, 3, 0, &pos, &neg) == 0 && pos == -1,
               "an anchor without a positive is invalid");
}

/* Duplicated rows and a collapsed batch: every distance is sqrt(1e-12) = 1e-6, so the hinge
 * loss is the margin (+1e-6 - 1e-6), the soft loss ln 2, and the gradient exactly zero. */
static void collapse(void) {
    enum { N = 8, D = 5 };
    float emb[N * D], demb[N * D], zeros[N * D] = {0};
    int32_t labels[N];
    for (int i = 0; i < N; i++) {
        labels[i] = (int32_t)(i / 2);
        for (int k = 0; k < D; k++) emb[i * D + k] = 0.25f * (float)(k + 1) - 3.0f;
    }
    for (int batch_all = 0; batch_all < 2; batch_all++) {
        st_triplet_stats s = run_triplet(N, D, batch_all, 0, 0.2f, emb, labels, demb);
        TEST_CHECK(s.loss == 0.2f, "collapse hinge (all=%d): loss %.9g, want the margin",
                   batch_all, s.loss);
        TEST_CHECK(s.active_fraction == 1.0f, "collapse: every term active");
        TEST_CLOSE("collapse hinge gradient is zero", demb, zeros, N * D, 0, 0);
        s = run_triplet(N, D, batch_all, 1, 0.0f, emb, labels, demb);
        TEST_CHECK(fabsf(s.loss - 0.6931472f) <= 1e-7f, "collapse soft (all=%d): loss %.9g, want "
                   "ln 2", batch_all, s.loss);
        TEST_CLOSE("collapse soft gradient is zero", demb, zeros, N * D, 0, 0);
    }
}

/* Class 1 has a single image: anchor 2 has no positive and is left out of the mean.
 * f0 = (0,0), f1 = (1,0) class 0, f2 = (0,2) class 1, m = 1.5: anchor 0: 1.5 + 1 - 2 = 0.5,
 * anchor 1: 1.5 + 1 - sqrt(5) = 0.263932; mean over 2 valid anchors 0.381966. */
static void anchor_without_positive(void) {
    const float emb[6] = {0, 0, 1, 0, 0, 2};
    const int32_t labels[3] = {0, 0, 1};
    float demb[6];
    st_triplet_stats s = run_triplet(3, 2, 0, 0, 1.5f, emb, labels, demb);
    TEST_CHECK(fabsf(s.loss - 0.381966f) <= 1e-6f, "lonely anchor: loss %.7f, want 0.381966",
               s.loss);
    TEST_CHECK(s.active_fraction == 1.0f, "both valid anchors active, got %g", s.active_fraction);
}

/* Rows sharing a large offset (1000): ||x||^2 ~ 4e6 while s ~ 8, so an expanded-form distance
 * ||x||^2 + ||y||^2 - 2 x.y would carry an absolute error of ~0.5 in s (relative error ~6%).
 * The direct differences of kernels/math/triplet.h must match the double-precision distance to
 * relative 1e-6 (float32 sums of 4 squared differences plus a sqrt: a few ulp). */
static void distances_under_cancellation(void) {
    enum { N = 6, D = 4 };
    float emb[N * D], demb[N * D], dist[N * N];
    int32_t labels[N] = {0, 0, 1, 1, 2, 2};
    for (int i = 0; i < N * D; i++) emb[i] = 1000.0f + rand_normal();
    st_triplet_desc desc = {.n = N, .d = D, .soft_margin = 1, .eps = 1e-12f};
    st_triplet_stats stats;
    cpu_triplet_loss(NULL, &desc, emb, labels, dist, demb, &stats);
    float want[N * N];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < D; k++) {
                double diff = (double)emb[i * D + k] - emb[j * D + k];
                s += diff * diff;
            }
            want[i * N + j] = (float)sqrt(s + 1e-12);
        }
    TEST_CLOSE("distances with a large common offset", dist, want, N * N, 0, 1e-6);
}

/* The same image twice in a batch: its two rows must be at bit-identical distances from every
 * other row, wherever they sit in the batch, or mining breaks the exact tie by rounding and the
 * gradient goes to the wrong copy (the bug that followed OpenBLAS's GEMM kernel). Bit equality,
 * not a tolerance: ties are decided by index only when the values are equal. */
static void duplicate_rows_tie_exactly(void) {
    enum { N = 40, D = 300, A = 3, B = 37 };
    float *emb = malloc(sizeof(float) * N * D), *demb = malloc(sizeof(float) * N * D);
    float *dist = malloc(sizeof(float) * N * N);
    int32_t labels[N];
    for (int i = 0; i < N * D; i++) emb[i] = rand_normal();
    for (int i = 0; i < N; i++) labels[i] = i % 10;
    memcpy(emb + B * D, emb + A * D, sizeof(float) * D);
    st_triplet_desc desc = {.n = N, .d = D, .soft_margin = 1, .eps = 1e-12f};
    st_triplet_stats stats;
    cpu_triplet_loss(NULL, &desc, emb, labels, dist, demb, &stats);
    int unequal = 0, asymmetric = 0;
    for (int j = 0; j < N; j++) {
        if (j != A && j != B) unequal += dist[A * N + j] != dist[B * N + j];
        for (int i = 0; i < N; i++) asymmetric += dist[i * N + j] != dist[j * N + i];
    }
    TEST_CHECK(unequal == 0, "duplicated rows: %d distances differ", unequal);
    TEST_CHECK(asymmetric == 0, "distance matrix: %d entries not symmetric", asymmetric);
    TEST_CHECK(dist[A * N + B] == sqrtf(1e-12f), "duplicate pair distance %g, want sqrt(eps)",
               dist[A * N + B]);
    free(emb);
    free(demb);
    free(dist);
}

int main(void) {
    worked_example();
    xent_example();
    xent_stats_ties();
    for (int batch_all = 0; batch_all < 2; batch_all++)
        for (int soft = 0; soft < 2; soft++) triplet_finite_differences(batch_all, soft);
    xent_finite_differences(0.0f);
    xent_finite_differences(0.1f);
    mining_ties();
    collapse();
    anchor_without_positive();
    distances_under_cancellation();
    duplicate_rows_tie_exactly();
    return test_finish("test_loss_kernels");
}
