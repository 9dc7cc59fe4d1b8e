/*
 * activation.c: ReLU forward/backward and the residual add (optionally fused with ReLU) on flat
 * float arrays of n elements (any layout; called by the ResNet blocks through the backend).
 * Backward masks with the forward output (kernels/math/activation.h); dx is overwritten.
 * In-place use (y == x, y == a, dx == dy) is allowed: every element is read before written.
 */
#include "../math/activation.h"
#include "cpu_ops.h"

#define ST_PARALLEL_MIN 32768

void cpu_relu_forward(st_backend *be, const float *x, float *y, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] = st_relu(x[i]);
}

void cpu_relu_backward(st_backend *be, const float *y, const float *dy, float *dx, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = st_relu_grad(y[i], dy[i]);
}

void cpu_add_forward(st_backend *be, const float *a, const float *b, float *y, size_t n, int relu) {
    (void)be;
    if (relu) {
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) y[i] = st_relu(a[i] + b[i]);
    } else {
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    }
}
