/*
 * gemm.cu: cuBLAS GEMM for the row-major contract of backend.h, the dense layer on top of it, and
 * the deterministic column sums used for bias gradients (dense db, conv dbias).
 *
 * Row-major through column-major: a row-major (m, n) matrix with leading dimension ldc is the
 * column-major (n, m) matrix C^T with the same leading dimension. So C = op(A) op(B) is computed
 * as C^T = op(B)^T op(A)^T, i.e. cuBLAS is called with the operands swapped (B first, A second)
 * and m, n swapped; the transpose flags keep their meaning per operand.
 * Compute type by the context's math mode (SIMTUNE_CUDA_MATH): fp32 CUBLAS_COMPUTE_32F (FP32 FMA,
 * no tensor cores; the handle's math mode is CUBLAS_DEFAULT_MATH, which adds no TF32), tf32
 * CUBLAS_COMPUTE_32F_FAST_TF32 (inputs rounded to TF32 inside the tensor-core kernels, FP32
 * accumulation and output).
 */
#include "../math/bf16.h"
#include "device.cuh"

extern "C" void cuda_gemm(st_backend *be, int trans_a, int trans_b, int m, int n, int k,
                          float alpha, const float *a, int lda, const float *b, int ldb,
                          float beta, float *c, int ldc) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=%d n=%d k=%d", m, n, k);
    if (m == 0 || n == 0) return;
    cublasComputeType_t compute =
        ctx->math == CUDA_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    CUBLAS_CHECK(cublasGemmEx(ctx->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_32F,
                              ldb, a, CUDA_R_32F, lda, &beta, c, CUDA_R_32F, ldc, compute,
                              CUBLAS_GEMM_DEFAULT));
}

/* y (rows, cols) = b broadcast over rows */
static __global__ void broadcast_rows(float *y, const float *b, size_t rows, int cols) {
    ST_GRID_STRIDE(i, rows * (size_t)cols) y[i] = b[i % (size_t)cols];
}

extern "C" void cuda_dense_forward(st_backend *be, int n, int in, int out, const float *x,
                                   const float *w, const float *b, float *y) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    size_t count = (size_t)n * out;
    if (b && count) {
        broadcast_rows<<<st_grid_for(count), ST_BLOCK, 0, ctx->stream>>>(y, b, (size_t)n, out);
        CUDA_CHECK_LAUNCH("broadcast_rows");
    }
    /* y[n,out] = x[n,in] * w[in,out] (+ y holding the bias) */
    cuda_gemm(be, 0, 0, n, out, in, 1.0f, x, in, w, out, b ? 1.0f : 0.0f, y, out);
}

extern "C" void cuda_dense_backward(st_backend *be, int n, int in, int out, const float *x,
                                    const float *w, const float *dy, float *dx, float *dw,
                                    float *db) {
    cuda_gemm(be, 1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, out);     /* dw = x^T dy */
    if (dx) cuda_gemm(be, 0, 1, n, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in); /* dy w^T */
    if (db) cuda_column_sums(be, n, out, dy, 0, db);
}

namespace {
struct column_value {
    const float *x; /* (rows, c), FP32 or bf16 bit patterns (x_bf16) */
    int c, x_bf16;
    __device__ double2 operator()(long row, int col) const {
        return make_double2((double)st_stored_load(x, x_bf16, (size_t)row * c + col), 0.0);
    }
};
} // namespace

static __global__ void store_sums(int c, const double2 *sums, float *out) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col < c) out[col] = (float)sums[col].x;
}

extern "C" void cuda_column_sums(st_backend *be, long rows, int c, const float *x, int x_bf16,
                                 float *out) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (c == 0) return;
    if (rows == 0) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)c * sizeof(float), ctx->stream));
        return;
    }
    double2 *scratch =
        (double2 *)cuda_scratch(be, st_column_scratch_count(rows, c) * sizeof(double2));
    column_value terms = {x, c, x_bf16};
    double2 *sums = st_column_sums(ctx->stream, rows, c, terms, scratch);
    store_sums<<<(c + ST_BLOCK - 1) / ST_BLOCK, ST_BLOCK, 0, ctx->stream>>>(c, sums, out);
    CUDA_CHECK_LAUNCH("store_sums");
}
