/*
 * test_losses_torch.c: the CPU triplet and cross-entropy kernels against PyTorch 1.13
 * (fixture losses_fixture.bin from tests/torch_losses.py, float64 autograd references).
 *
 * Tolerance: relative error by norm <= 1e-5 for losses, gradients and statistics. The kernels
 * run in float32 (unit roundoff 6e-8); a distance is a sum of D <= 128 products plus a sqrt and
 * the gradient a few such terms divided by a distance, so the accumulated relative error is a
 * few 1e-7 * sqrt(D) ~ 1e-6 at most; 1e-5 leaves a 10x margin and still catches any formula
 * slip (a wrong tie, a missed anchor or a wrong mean changes these by >= 1e-2).
 * Cases are generated so that no mining or hinge decision lies within 1e-4 of flipping.
 */
#include <stdint.h>

#include "kernels/cpu/cpu_ops.h"
#include "losses_fixture.h"
#include "test_util.h"

static void check_triplet_case(const fixture *fx, int index) {
    const int32_t *shape = fixture_get(fx, "triplet", index, "shape", 0, 4);
    const int n = shape[0], dim = shape[1];
    st_triplet_desc desc = {.n = n, .d = dim, .batch_all = shape[2], .soft_margin = shape[3],
                            .margin = *(const float *)fixture_get(fx, "triplet", index, "margin",
                                                                  1, 1),
                            .eps = 1e-12f};
    const int32_t *labels = fixture_get(fx, "triplet", index, "labels", 0, n);
    const float *emb = fixture_get(fx, "triplet", index, "emb", 1, (int64_t)n * dim);
    const double *ref_stats = fixture_get(fx, "triplet", index, "stats", 2, 4);
    float *ref_grad = fixture_to_float(fixture_get(fx, "triplet", index, "grad", 2,
                                                   (int64_t)n * dim), (size_t)n * dim);
    float *dist = malloc(sizeof(float) * (size_t)n * n);
    float *demb = malloc(sizeof(float) * (size_t)n * dim);
    st_triplet_stats stats;
    cpu_triplet_loss(NULL, &desc, emb, labels, dist, demb, &stats);

    const float got[4] = {stats.loss, stats.active_fraction, stats.mean_pos, stats.mean_neg};
    const char *names[4] = {"loss", "active_fraction", "mean_pos", "mean_neg"};
    for (int s = 0; s < 4; s++)
        TEST_CHECK(fabs(got[s] - ref_stats[s]) <= 1e-5 * fabs(ref_stats[s]) + 1e-7,
                   "triplet case %d (N=%d D=%d all=%d soft=%d): %s %.9g, torch %.9g", index, n,
                   dim, desc.batch_all, desc.soft_margin, names[s], got[s], ref_stats[s]);
    double rel = test_rel_error(demb, ref_grad, (size_t)n * dim);
    TEST_CHECK(rel <= 1e-5, "triplet case %d (N=%d D=%d all=%d soft=%d): gradient rel error %.3g",
               index, n, dim, desc.batch_all, desc.soft_margin, rel);
    printf("triplet case %2d: N=%3d D=%3d all=%d soft=%d loss %.7f (torch %.7f) grad rel %.2e\n",
           index, n, dim, desc.batch_all, desc.soft_margin, stats.loss, ref_stats[0], rel);
    free(ref_grad);
    free(dist);
    free(demb);
}

static void check_xent_case(const fixture *fx, int index) {
    const int32_t *shape = fixture_get(fx, "xent", index, "shape", 0, 2);
    const int n = shape[0], k = shape[1];
    const float smoothing = *(const float *)fixture_get(fx, "xent", index, "smoothing", 1, 1);
    const float *logits = fixture_get(fx, "xent", index, "logits", 1, (int64_t)n * k);
    const int32_t *labels = fixture_get(fx, "xent", index, "labels", 0, n);
    const double ref_loss = *(const double *)fixture_get(fx, "xent", index, "loss", 2, 1);
    float *ref_grad = fixture_to_float(fixture_get(fx, "xent", index, "grad", 2, (int64_t)n * k),
                                       (size_t)n * k);
    float *probs = malloc(sizeof(float) * (size_t)n * k);
    float *dlogits = malloc(sizeof(float) * (size_t)n * k);
    float *loss_rows = malloc(sizeof(float) * (size_t)n);
    st_xent_stats stats;
    cpu_xent_forward(NULL, n, k, logits, labels, smoothing, probs, loss_rows, &stats);
    cpu_xent_backward(NULL, n, k, probs, labels, smoothing, 1.0f / (float)n, dlogits);
    double loss = 0;
    for (int i = 0; i < n; i++) loss += loss_rows[i];
    TEST_CHECK(stats.loss_sum == loss, "xent case %d: stats loss_sum %.17g, rows add to %.17g",
               index, stats.loss_sum, loss); /* both in row order, in double: equal */
    loss /= n;
    TEST_CHECK(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss),
               "xent case %d (N=%d K=%d eps=%g): loss %.9g, torch %.9g", index, n, k, smoothing,
               loss, ref_loss);
    double rel = test_rel_error(dlogits, ref_grad, (size_t)n * k);
    TEST_CHECK(rel <= 1e-5, "xent case %d (N=%d K=%d eps=%g): gradient rel error %.3g", index, n,
               k, smoothing, rel);
    printf("xent case %d: N=%2d K=%4d eps=%.2f loss %.7f (torch %.7f) grad rel %.2e\n", index, n,
           k, smoothing, loss, ref_loss, rel);
    free(ref_grad);
    free(probs);
    free(dlogits);
    free(loss_rows);
}

int main(void) {
    fixture *fx = fixture_load("losses_fixture.bin");
    if (!fx) test_skip("losses_fixture.bin missing (the torch_losses_fixture test writes it)");
    const int triplets = *(const int32_t *)fixture_get(fx, "triplet", -1, "count", 0, 1);
    const int xents = *(const int32_t *)fixture_get(fx, "xent", -1, "count", 0, 1);
    TEST_CHECK(triplets >= 10 && xents >= 4, "fixture holds too few cases (%d, %d)", triplets,
               xents);
    for (int i = 0; i < triplets; i++) check_triplet_case(fx, i);
    for (int i = 0; i < xents; i++) check_xent_case(fx, i);
    fixture_free(fx);
    return test_finish("test_losses_torch");
}
