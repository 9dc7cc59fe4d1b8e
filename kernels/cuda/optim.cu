/*
 * optim.cu: the optimizer step without a host round trip.
 *
 *   optim_grad_norm  squared gradient norm over a device list of spans (one parameter tensor's
 *                    gradient each): a (blocks, spans) grid writes one double partial per block,
 *                    one block adds them in a fixed order and decides clip and skip
 *                    (st_optim_status_decide) into the device status. Deterministic, no atomics.
 *   optim_step       one fused kernel over a flat slice of the parameter arena (param, grad, m,
 *                    v: (n) floats), element by element with kernels/math/optim.h (PyTorch 1.13
 *                    torch.optim semantics), exactly the update kernels/cpu/optim.c applies. It
 *                    reads the status itself: a skipped step returns at once, a clipped one
 *                    multiplies each gradient by clip_coef, and the per-step scalars (bias
 *                    corrections, decoupled decay) are made per thread by st_optim_coeffs_make
 *                    from the step the status implies.
 * State roles: SGD m = momentum buffer; Adam/AdamW m, v = exp_avg, exp_avg_sq; RMSprop v =
 * square_avg, m = momentum buffer. Unused states may be NULL. Called by train/optim.c.
 */
#include "../math/optim.h"
#include "device.cuh"

enum { NORM_BLOCKS_PER_SPAN = 32 };

static __global__ void span_sum_squares(const st_span *spans, double *partial) {
    const st_span span = spans[blockIdx.y];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < span.n;
         i += (size_t)gridDim.x * blockDim.x)
        acc += (double)span.x[i] * (double)span.x[i];
    acc = st_block_sum(acc);
    if (threadIdx.x == 0) partial[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = acc;
}

static __global__ void norm_decide(const double *partial, int count, float clip_norm,
                                   st_optim_status *status) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = st_block_sum(acc);
    if (threadIdx.x == 0) {
        status->sum_squares = acc;
        st_optim_status_decide(status, clip_norm);
    }
}

extern "C" void cuda_optim_grad_norm(st_backend *be, const st_span *spans, int count,
                                     float clip_norm, st_optim_status *status) {
    ST_CHECK(count >= 1 && count <= 65535, "optim_grad_norm: %d spans (1..65535)", count);
    cuda_ctx *ctx = cuda_ctx_of(be);
    const int partials = count * NORM_BLOCKS_PER_SPAN;
    double *partial = (double *)cuda_scratch(be, (size_t)partials * sizeof(double));
    span_sum_squares<<<dim3(NORM_BLOCKS_PER_SPAN, (unsigned)count), ST_BLOCK, 0, ctx->stream>>>(
        spans, partial);
    CUDA_CHECK_LAUNCH("span_sum_squares");
    norm_decide<<<1, ST_BLOCK, 0, ctx->stream>>>(partial, partials, clip_norm, status);
    CUDA_CHECK_LAUNCH("norm_decide");
}

static __global__ void optim_kernel(const st_optim_desc d, const st_optim_status *status,
                                    float *param, const float *grad, float *m, float *v,
                                    size_t n) {
    if (status && status->skip) return;
    const st_optim_desc effective = st_optim_desc_effective(&d, status);
    const st_optim_coeffs c = st_optim_coeffs_make(&effective);
    ST_GRID_STRIDE(i, n) {
        float unused_state = 0.0f; /* stands in for a NULL state the update never reads */
        st_optim_update(&c, param + i, st_optim_grad_effective(grad[i], status),
                        m ? m + i : &unused_state, v ? v + i : &unused_state);
    }
}

extern "C" void cuda_optim_step(st_backend *be, const st_optim_desc *d, float *param,
                                const float *grad, float *m, float *v, size_t n,
                                const st_optim_status *status) {
    const int needs_m = d->kind == ST_OPT_ADAM || d->kind == ST_OPT_ADAMW || d->momentum != 0.0f;
    const int needs_v = d->kind != ST_OPT_SGD;
    ST_CHECK(d->kind == ST_OPT_SGD || d->kind == ST_OPT_ADAM || d->kind == ST_OPT_ADAMW ||
                 d->kind == ST_OPT_RMSPROP,
             "optim_step: unknown optimizer kind %d", (int)d->kind);
    ST_CHECK(!needs_m || m, "optim_step: optimizer kind %d needs the m state", (int)d->kind);
    ST_CHECK(!needs_v || v, "optim_step: optimizer kind %d needs the v state", (int)d->kind);
    if (n == 0) return;
    optim_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(*d, status, param, grad,
                                                                           m, v, n);
    CUDA_CHECK_LAUNCH("optim_kernel");
}
