/*
 * xent.cu: softmax cross-entropy with label smoothing on the GPU, one block per row, with the
 * formulas of kernels/math/xent.h (as kernels/cpu/xent.c).
 *   logits, probs, dlogits (N, K) row-major; labels int32 (N) on the device; loss_rows (N);
 *   stats (device): the loss sum and top-1 hits, added in row order by one thread (as the CPU).
 * Each thread sums its share of the row in float with the CPU's row functions (xent.h parts),
 * the block adds the thread sums in double and rounds to float: for K <= ST_BLOCK (one entry per
 * thread) that is the old all-double reduction exactly; for larger K the thread sums round
 * (relative ~K/ST_BLOCK float ulps), where the CPU sums the whole row in float.
 * Nothing is read back: a row whose label is outside [0, K) reads nothing out of bounds and gets
 * a NaN loss, which the caller's divergence check stops on (train/loss.c checks its host labels
 * before uploading them, so it fails as the CPU does).
 */
#include "../math/xent.h"
#include "device.cuh"

static __global__ void xent_forward_kernel(int k, const float *logits, const int32_t *labels,
                                           float smoothing, float *probs, float *loss_rows,
                                           int *hits) {
    __shared__ int top1;
    size_t row = (size_t)blockIdx.x * k;
    const float *z = logits + row;
    int label = labels[blockIdx.x];
    if (label < 0 || label >= k) { /* uniform over the block: no thread reaches a barrier */
        if (threadIdx.x == 0) {
            loss_rows[blockIdx.x] = NAN;
            hits[blockIdx.x] = 0;
        }
        return;
    }
    if (threadIdx.x == 0) top1 = k;
    float row_max = st_block_max(st_xent_max_part(z, k, threadIdx.x, blockDim.x));
    atomicMin(&top1, st_xent_top1_part(z, k, row_max, threadIdx.x, blockDim.x));
    float part_exp, part_shifted;
    st_xent_exp_part(z, k, row_max, threadIdx.x, blockDim.x, probs + row, &part_exp,
                     &part_shifted);
    double sum_exp = st_block_sum(part_exp), sum_shifted = st_block_sum(part_shifted);
    st_xent_scale_part(probs + row, k, 1.0f / (float)sum_exp, threadIdx.x, blockDim.x);
    if (threadIdx.x == 0) {
        loss_rows[blockIdx.x] = st_xent_row_loss(z, k, label, smoothing, row_max, (float)sum_exp,
                                                 (float)sum_shifted);
        hits[blockIdx.x] = top1 == label; /* the block sums above passed barriers after atomicMin */
    }
}

/* One thread: the batch's loss sum and hits in row order, as the CPU adds them. */
static __global__ void xent_stats_kernel(int n, const float *loss_rows, const int *hits,
                                         st_xent_stats *stats) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    st_xent_stats s = {0.0, 0.0};
    for (int i = 0; i < n; i++) {
        s.loss_sum += loss_rows[i];
        s.correct += hits[i];
    }
    *stats = s;
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
                                  float *loss_rows, st_xent_stats *stats) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(n > 0 && k > 0, "xent_forward: bad shape (%d, %d)", n, k);
    int *hits = (int *)cuda_scratch(be, sizeof(int) * (size_t)n);
    xent_forward_kernel<<<n, ST_BLOCK, 0, ctx->stream>>>(k, logits, labels, smoothing, probs,
                                                         loss_rows, hits);
    CUDA_CHECK_LAUNCH("xent_forward_kernel");
    xent_stats_kernel<<<1, 32, 0, ctx->stream>>>(n, loss_rows, hits, stats);
    CUDA_CHECK_LAUNCH("xent_stats_kernel");
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
