/*
 * l2norm.cu: row-wise L2 normalisation of embeddings x (N, D) -> y (N, D) on the GPU, norms (N)
 * holding the divisor max(||x||, eps); formulas and the clamp convention of kernels/math/l2norm.h,
 * reductions in double like kernels/cpu/l2norm.c. One block per row. dx is overwritten.
 */
#include "../math/l2norm.h"
#include "device.cuh"

static __global__ void l2norm_forward_kernel(int d, const float *x, float *y, float *norms,
                                             float eps) {
    const float *xr = x + (size_t)blockIdx.x * d;
    float *yr = y + (size_t)blockIdx.x * d;
    double ss = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) ss += (double)xr[j] * xr[j];
    ss = st_block_sum(ss);
    float den = st_l2_den(ss, eps);
    if (threadIdx.x == 0) norms[blockIdx.x] = den;
    float inv = 1.0f / den;
    for (int j = threadIdx.x; j < d; j += blockDim.x) yr[j] = xr[j] * inv;
}

static __global__ void l2norm_backward_kernel(int d, const float *y, const float *norms,
                                              const float *dy, float *dx) {
    size_t row = (size_t)blockIdx.x * d;
    double yy = 0.0, yg = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        yy += (double)y[row + j] * y[row + j];
        yg += (double)y[row + j] * dy[row + j];
    }
    yy = st_block_sum(yy);
    yg = st_block_sum(yg);
    float proj = (float)st_l2_projection(yy, yg);
    float inv = 1.0f / norms[blockIdx.x];
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        dx[row + j] = st_l2_backward_dx(dy[row + j], y[row + j], proj, inv);
}

extern "C" void cuda_l2norm_forward(st_backend *be, int n, int d, const float *x, float *y,
                                    float *norms, float eps) {
    if (n <= 0) return;
    l2norm_forward_kernel<<<n, ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(d, x, y, norms, eps);
    CUDA_CHECK_LAUNCH("l2norm_forward_kernel");
}

extern "C" void cuda_l2norm_backward(st_backend *be, int n, int d, const float *y,
                                     const float *norms, const float *dy, float *dx) {
    if (n <= 0) return;
    l2norm_backward_kernel<<<n, ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(d, y, norms, dy, dx);
    CUDA_CHECK_LAUNCH("l2norm_backward_kernel");
}
