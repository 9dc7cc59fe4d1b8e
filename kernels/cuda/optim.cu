/*
 * optim.cu: one fused kernel applying an optimizer step over a flat slice of the parameter arena
 * (param, grad, m, v: (n) floats), element by element with kernels/math/optim.h (PyTorch 1.13
 * torch.optim semantics), exactly the update kernels/cpu/optim.c applies. The per-step scalars
 * (bias corrections, decoupled decay) are made once on the host by st_optim_coeffs_make and
 * passed by value. State roles: SGD m = momentum buffer; Adam/AdamW m, v = exp_avg, exp_avg_sq;
 * RMSprop v = square_avg, m = momentum buffer. Unused states may be NULL.
 */
#include "../math/optim.h"
#include "device.cuh"

static __global__ void optim_kernel(const st_optim_coeffs c, float *param, const float *grad,
                                    float *m, float *v, size_t n) {
    ST_GRID_STRIDE(i, n) {
        float unused_state = 0.0f; /* stands in for a NULL state the update never reads */
        st_optim_update(&c, param + i, grad[i], m ? m + i : &unused_state,
                        v ? v + i : &unused_state);
    }
}

extern "C" void cuda_optim_step(st_backend *be, const st_optim_desc *d, float *param,
                                const float *grad, float *m, float *v, size_t n) {
    const int needs_m = d->kind == ST_OPT_ADAM || d->kind == ST_OPT_ADAMW || d->momentum != 0.0f;
    const int needs_v = d->kind != ST_OPT_SGD;
    ST_CHECK(d->kind == ST_OPT_SGD || d->kind == ST_OPT_ADAM || d->kind == ST_OPT_ADAMW ||
                 d->kind == ST_OPT_RMSPROP,
             "optim_step: unknown optimizer kind %d", (int)d->kind);
    ST_CHECK(!needs_m || m, "optim_step: optimizer kind %d needs the m state", (int)d->kind);
    ST_CHECK(!needs_v || v, "optim_step: optimizer kind %d needs the v state", (int)d->kind);
    if (n == 0) return;
    const st_optim_coeffs c = st_optim_coeffs_make(d);
    optim_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(c, param, grad, m, v, n);
    CUDA_CHECK_LAUNCH("optim_kernel");
}
