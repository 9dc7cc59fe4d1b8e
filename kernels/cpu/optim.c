/*
 * optim.c: CPU optimizer step over a flat slice of the parameter arena (st_backend optim_step).
 * param, grad, m, v are (n) floats; which of m, v are used per optimizer is listed in
 * kernels/math/optim.h, whose per-element update (PyTorch 1.13 torch.optim) this loop applies.
 * Called by train/optim.c once per parameter tensor and step.
 */
#include "../check.h"
#include "../math/optim.h"
#include "cpu_ops.h"

void cpu_optim_step(st_backend *be, const st_optim_desc *d, float *param, const float *grad,
                    float *m, float *v, size_t n) {
    (void)be;
    const st_optim_coeffs c = st_optim_coeffs_make(d);
    const int needs_m = d->kind == ST_OPT_ADAM || d->kind == ST_OPT_ADAMW || d->momentum != 0.0f;
    const int needs_v = d->kind != ST_OPT_SGD;
    ST_CHECK(!needs_m || m, "optim_step: optimizer kind %d needs the m state", (int)d->kind);
    ST_CHECK(!needs_v || v, "optim_step: optimizer kind %d needs the v state", (int)d->kind);
    /* One loop per kind so each loop body is branch-free and vectorisable. */
    switch (d->kind) {
    case ST_OPT_SGD:
        if (m) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) st_sgd_update(&c, param + i, grad[i], m + i);
        } else { /* momentum 0: the buffer is never read or written */
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) {
                float unused_buffer = 0.0f;
                st_sgd_update(&c, param + i, grad[i], &unused_buffer);
            }
        }
        break;
    case ST_OPT_ADAM:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) st_adam_update(&c, param + i, grad[i], m + i, v + i);
        break;
    case ST_OPT_ADAMW:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) st_adamw_update(&c, param + i, grad[i], m + i, v + i);
        break;
    case ST_OPT_RMSPROP:
        if (m) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) st_rmsprop_update(&c, param + i, grad[i], m + i, v + i);
        } else { /* momentum 0: the buffer is never read or written */
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) {
                float unused_buffer = 0.0f;
                st_rmsprop_update(&c, param + i, grad[i], &unused_buffer, v + i);
            }
        }
        break;
    default: ST_FAIL("optim_step: unknown optimizer kind %d", (int)d->kind);
    }
}
