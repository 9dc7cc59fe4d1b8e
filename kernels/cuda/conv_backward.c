/*
 * conv_backward.c: the CUDA side of conv_backward (backend.h), training's both backward passes
 * of a convolution in one call, which the model (infer/model/conv.c) uses for every trainable
 * convolution. On the CPU the single call lets a bf16 plan round dy once for both passes
 * (kernels/cpu/conv.c); here it runs conv_backward_filter then conv_backward_data (conv.cu),
 * each converting its own inputs (none when they arrive as bf16: x_bf16, dy_bf16). Shapes and
 * layouts are those ops': x (N, H, W, C), dy (N, P, Q, K) NHWC, kernels in KRSC.
 */
#include <time.h>

#include "cuda_ops.h"

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* With data_seconds (profiling), the stream is drained around backward-data so that its time is
 * the pass's own: ops are asynchronous here. */
void cuda_conv_backward(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                        const float *w, float *dw, float *dbias, float *dx, double *data_seconds) {
    if (dw) cuda_conv_backward_filter(be, p, x, dy, dw, dbias);
    if (data_seconds) cuda_sync(be);
    const double t0 = data_seconds ? seconds_now() : 0;
    if (dx) cuda_conv_backward_data(be, p, dy, w, dx);
    if (!data_seconds) return;
    cuda_sync(be);
    *data_seconds = seconds_now() - t0;
}
