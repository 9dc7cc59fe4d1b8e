/*
 * xent.cu: softmax cross-entropy with label smoothing on the GPU, one block per row, with the
 * formulas of kernels/math/xent.h (as kernels/cpu/xent.c).
 *   logits, probs, dlogits (N, K) row-major; labels int32 (N) on the device; loss_rows (N).
 * Each thread sums its share of the row in float with the CPU's row functions (xent.h parts),
 * the block adds the thread sums in double and rounds to float: for K <= ST_BLOCK (one entry per
 * thread) that is the old all-double reduction exactly; for larger K the thread sums round
 * (relative ~K/ST_BLOCK float ulps), where the CPU sums the whole row in float.
 * Labels live on the device, so the forward kernel records the first row with a label outside
 * [0, K) and the host checks it (one small synchronous read per call), failing like the CPU's
 * ST_CHECK instead of reading out of bounds.
 */
#include "../math/xent.h"
#include "device.cuh"

static __global__ void xent_forward_kernel(int k, const float *logits, const int32_t *labels,
                                           float smoothing, float *probs, float *loss_rows,
                                           int *bad_row) {
    size_t row = (size_t)blockIdx.x * k;
    const float *z = logits + row;
    int label = labels[blockIdx.x];
    if (label < 0 || label >= k) { /* uniform over the block: no thread reaches a barrier */
        if (threadIdx.x == 0) atomicMin(bad_row, (int)blockIdx.x);
        return;
    }
    float row_max = st_block_max(st_xent_max_part(z, k, threadIdx.x, blockDim.x));
    float part_exp, part_shifted;
    st_xent_exp_part(z, k, row_max, threadIdx.x, blockDim.x, probs + row, &part_exp,
                     &part_shifted);
    double sum_exp = st_block_sum(part_exp), sum_shifted = st_block_sum(part_shifted);
    st_xent_scale_part(probs + row, k, 1.0f / (float)sum_exp, threadIdx.x, blockDim.x);
    if (threadIdx.x == 0)
        loss_rows[blockIdx.x] = st_xent_row_loss(z, k, label, smoothing, row_max, (float)sum_exp,
                                                 (float)sum_shifted);
}

static __global__ void xent_backward_kernel(int n, int k, const float *probs,
                                            const int32_t *labels, float smoothing, float scale,
                                            float *dlogits) {
    ST_GRID_STRIDE(i, (size_t)n * k) {
        int j = (int)(i % (size_t)k);
        dlogits[i] = st_xent_grad(probs[i], j, labels[i / (size_t)k], smoothing, k, scale);
    }
}

extern "C" void cuda_xent_forward(st_backend *be, int n, int k, const float *logits,
                                  const int32_t *labels, float smoothing, float *probs,
                                  float *loss_rows) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(n > 0 && k > 0, "xent_forward: bad shape (%d, %d)", n, k);
    int *bad_row = (int *)cuda_scratch(be, sizeof(int));
    int *host = (int *)cuda_host_result(be, sizeof(int));
    /* bytes 0x7f: INT_MAX-like 0x7f7f7f7f, above any row index, means "no bad row" */
    CUDA_CHECK(cudaMemsetAsync(bad_row, 0x7f, sizeof(int), ctx->stream));
    xent_forward_kernel<<<n, ST_BLOCK, 0, ctx->stream>>>(k, logits, labels, smoothing, probs,
                                                         loss_rows, bad_row);
    CUDA_CHECK_LAUNCH("xent_forward_kernel");
    CUDA_CHECK(cudaMemcpyAsync(host, bad_row, sizeof(int), cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    if (*host < n) {
        int32_t label = 0;
        CUDA_CHECK(cudaMemcpy(&label, labels + *host, sizeof label, cudaMemcpyDeviceToHost));
        ST_FAIL("xent: label %d of row %d outside [0, %d)", (int)label, *host, k);
    }
}

extern "C" void cuda_xent_backward(st_backend *be, int n, int k, const float *probs,
                                   const int32_t *labels, float smoothing, float scale,
                                   float *dlogits) {
    ST_CHECK(n > 0 && k > 0, "xent_backward: bad shape (%d, %d)", n, k);
    size_t total = (size_t)n * k;
    xent_backward_kernel<<<st_grid_for(total), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(
        n, k, probs, labels, smoothing, scale, dlogits);
    CUDA_CHECK_LAUNCH("xent_backward_kernel");
}
