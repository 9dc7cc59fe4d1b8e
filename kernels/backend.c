/* backend.c: open a backend by name, refuse incomplete ones, and the shared shape arithmetic. */
#include "backend.h"

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cpu/cpu_backend.h"
#ifdef SIMTUNE_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

/* The first op a backend leaves NULL, or NULL when it fills them all. Both backends wire every
 * op from ST_BACKEND_OPS, so this guards a backend wired any other way. */
static const char *missing_op(const st_backend *be) {
#define RETURN_IF_MISSING(ret, op, params) if (!be->op) return #op;
    ST_BACKEND_OPS(RETURN_IF_MISSING)
#undef RETURN_IF_MISSING
    return NULL;
}

st_backend *st_backend_open(const char *name, int threads) {
    st_backend *be = NULL;
    if (strcmp(name, "cpu") == 0) {
        be = st_cpu_backend_create(threads);
    } else if (strcmp(name, "cuda") == 0) {
#ifdef SIMTUNE_HAVE_CUDA
        be = st_cuda_backend_create(threads);
        if (!be) return NULL; /* st_cuda_backend_create set the message */
#else
        st_error_set("this simtune was built without CUDA (configure with nvcc, cuDNN and cuBLAS "
                     "present and -DSIMTUNE_CUDA=ON)");
        return NULL;
#endif
    } else {
        st_error_set("unknown device '%s' (expected cpu or cuda)", name);
        return NULL;
    }
    const char *missing = missing_op(be);
    ST_CHECK(missing == NULL, "backend '%s' leaves op %s unimplemented", name, missing);
    return be;
}

void st_backend_close(st_backend *be) {
    if (be) be->destroy(be);
}

static int out_size(int in, int pad_a, int pad_b, int window, int stride) {
    int span = in + pad_a + pad_b - window;
    ST_CHECK(span >= 0, "window %d is larger than the padded input %d", window, in + pad_a + pad_b);
    return span / stride + 1;
}

void st_conv_desc_finish(st_conv_desc *d) {
    ST_CHECK(d->stride_h > 0 && d->stride_w > 0, "conv stride must be positive");
    d->p = out_size(d->h, d->pad_top, d->pad_bottom, d->r, d->stride_h);
    d->q = out_size(d->w, d->pad_left, d->pad_right, d->s, d->stride_w);
}

void st_pool_desc_finish(st_pool_desc *d) {
    ST_CHECK(d->stride_h > 0 && d->stride_w > 0, "pool stride must be positive");
    d->p = out_size(d->h, d->pad_top, d->pad_bottom, d->r, d->stride_h);
    d->q = out_size(d->w, d->pad_left, d->pad_right, d->s, d->stride_w);
}
