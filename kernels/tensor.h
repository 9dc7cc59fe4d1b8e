/*
 * tensor.h: a view of float32 memory owned by a backend arena.
 *
 * Activations are NHWC: dims = {N, H, W, C}, C fastest. Dense kernels are {1, 1, in, out},
 * vectors {1, 1, 1, C}. Conv kernels are not tensors of a fixed layout: each backend keeps them
 * in its own (backend.h, convolution ops: conv_weights_numel floats, converted from and to the
 * weight files' HWIO at load and save). A tensor never owns its memory; `data` is a device
 * pointer of the backend that allocated it and is only read or written through that backend's
 * functions.
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
