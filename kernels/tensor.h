/*
 * tensor.h: a view of float32 memory owned by a backend arena.
 *
 * Activations are NHWC: dims = {N, H, W, C}, C fastest. Parameters keep the Keras layout of the
 * weight files: conv kernels HWIO {R, S, C_in, K}, dense kernels {1, 1, in, out}, vectors
 * {1, 1, 1, C}. A tensor never owns its memory; `data` is a device pointer of the backend that
 * allocated it and is only read or written through that backend's functions.
 */
#ifndef ST_TENSOR_H
#define ST_TENSOR_H

#include <stddef.h>

typedef struct st_tensor {
    float *data; /* device memory of the owning backend, or NULL while sizing */
    int n, h, w, c;
} st_tensor;

static inline size_t st_numel(st_tensor t) { return (size_t)t.n * t.h * t.w * t.c; }

static inline st_tensor st_tensor_4d(int n, int h, int w, int c) {
    st_tensor t = {NULL, n, h, w, c};
    return t;
}

#endif
