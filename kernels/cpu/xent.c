/*
 * xent.c: CPU softmax cross-entropy with label smoothing (st_backend xent_forward/backward).
 * logits, probs, dlogits (N, K) row-major; labels int32 (N) in [0, K); loss_rows (N); stats the
 * batch's loss sum and top-1 hits.
 * The per-row formulas are kernels/math/xent.h (shared with CUDA); rows run in parallel.
 */
#include "../check.h"
#include "../math/xent.h"
#include "cpu_ops.h"

/* The shape and every label, for op `op` (xent_forward / xent_backward). */
static void check_rows(const char *op, int n, int k, const int32_t *labels) {
    ST_CHECK(n > 0 && k > 0, "%s: bad shape (%d, %d)", op, n, k);
    for (int i = 0; i < n; i++)
        ST_CHECK(labels[i] >= 0 && labels[i] < k, "xent: label %d of row %d outside [0, %d)",
                 (int)labels[i], i, k);
}

void cpu_xent_forward(st_backend *be, int n, int k, const float *logits, const int32_t *labels,
                      float smoothing, float *probs, float *loss_rows, st_xent_stats *stats) {
    (void)be;
    check_rows("xent_forward", n, k, labels);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const size_t row = (size_t)i * k;
        loss_rows[i] = st_xent_row_forward(logits + row, k, labels[i], smoothing, probs + row);
    }
    /* sequential, in row order: the sum does not depend on the thread count */
    st_xent_stats s = {0, 0};
    for (int i = 0; i < n; i++) {
        s.loss_sum += loss_rows[i];
        s.correct += st_xent_top1(logits + (size_t)i * k, k) == labels[i];
    }
    *stats = s;
}

void cpu_xent_backward(st_backend *be, int n, int k, const float *probs, const int32_t *labels,
                       float smoothing, float scale, float *dlogits) {
    (void)be;
    check_rows("xent_backward", n, k, labels);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const size_t row = (size_t)i * k;
        for (int j = 0; j < k; j++)
            dlogits[row + j] = st_xent_grad(probs[row + j], j, labels[i], smoothing, k, scale);
    }
}
