/*
 * gemm.c: row-major GEMM through OpenBLAS and the dense (fully connected) layer built on it.
 *
 * Dense layers keep the Keras kernel layout: x (N, in), w (in, out), b (out), y (N, out).
 *   forward:  y = x w + b
 *   backward: dx = dy w^T (N, in), dw = x^T dy (in, out), db = column sums of dy (out);
 *             dx and db may be NULL; outputs are overwritten.
 * OpenBLAS runs its own pthread pool next to OpenMP's. Large products use be->threads of it; small
 * ones (the dense head: under ST_GEMM_PARALLEL_MIN multiply-adds, well under a
 * millisecond) run on the calling thread, so OpenBLAS's workers, which spin for a while after each
 * parallel call, do not compete with the OpenMP/oneDNN threads of the next op for the cores.
 */
#include <cblas.h>

#include "../check.h"
#include "cpu_ops.h"

#define ST_GEMM_PARALLEL_MIN (1 << 24)

static void blas_threads(const st_backend *be, int m, int n, int k) {
    int threads = (double)m * n * k >= ST_GEMM_PARALLEL_MIN ? be->threads : 1;
    if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
}

void cpu_gemm(st_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    ST_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=%d n=%d k=%d", m, n, k);
    if (m == 0 || n == 0) return;
    blas_threads(be, m, n, k);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cpu_dense_forward(st_backend *be, int n, int in, int out, const float *x, const float *w,
                       const float *b, float *y) {
    if (b) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] = b[j];
    }
    cpu_gemm(be, 0, 0, n, out, in, 1.0f, x, in, w, out, b ? 1.0f : 0.0f, y, out);
}

void cpu_dense_backward(st_backend *be, int n, int in, int out, const float *x, const float *w,
                        const float *dy, float *dx, float *dw, float *db) {
    if (dx) cpu_gemm(be, 0, 1, n, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in);
    cpu_gemm(be, 1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, out);
    if (db) {
        for (int j = 0; j < out; j++) db[j] = 0.0f;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * out + j];
    }
}
