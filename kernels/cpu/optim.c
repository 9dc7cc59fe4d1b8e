/*
 * optim.c: CPU optimizer step over a flat slice of the parameter arena (st_backend optim_step).
 * param, grad, m, v are (n) floats; which of m, v are used per optimizer is listed in
 * kernels/math/optim.h, whose per-element update (PyTorch 1.13 torch.optim) this loop applies.
 * Called by train/optim.c once per parameter tensor and step, after optim_grad_norm (below) has
 * put the step's gradient norm, clip and skip verdict into the status it passes (here host
 * memory, read directly: the CPU has no device to wait for).
 */
#include "../check.h"
#include "../math/optim.h"
#include "cpu_ops.h"

/* Span by span through cpu_sum_squares, added in span order: the same double sum as one
 * sum_squares call per parameter tensor. */
void cpu_optim_grad_norm(st_backend *be, const st_span *spans, int count, float clip_norm,
                         st_optim_status *status) {
    double sum = 0.0;
    for (int i = 0; i < count; i++) sum += cpu_sum_squares(be, spans[i].x, spans[i].n);
    status->sum_squares = sum;
    st_optim_status_decide(status, clip_norm);
}

void cpu_optim_step(st_backend *be, const st_optim_desc *d, float *param, const float *grad,
                    float *m, float *v, size_t n, const st_optim_status *status) {
    (void)be;
    if (status && status->skip) return;
    /* a local copy: the loops' stores cannot alias it, so its fields stay in registers */
    st_optim_status verdict;
    const st_optim_status *s = status ? (verdict = *status, &verdict) : NULL;
    const st_optim_desc effective = st_optim_desc_effective(d, s);
    const st_optim_coeffs c = st_optim_coeffs_make(&effective);
    const int needs_m = d->kind == ST_OPT_ADAM || d->kind == ST_OPT_ADAMW || d->momentum != 0.0f;
    const int needs_v = d->kind != ST_OPT_SGD;
    ST_CHECK(!needs_m || m, "optim_step: optimizer kind %d needs the m state", (int)d->kind);
    ST_CHECK(!needs_v || v, "optim_step: optimizer kind %d needs the v state", (int)d->kind);
    /* One loop per kind so each loop body is branch-free and vectorisable. */
    switch (d->kind) {
    case ST_OPT_SGD:
        if (m) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++)
                st_sgd_update(&c, param + i, st_optim_grad_effective(grad[i], s), m + i);
        } else { /* momentum 0: the buffer is never read or written */
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) {
                float unused_buffer = 0.0f;
                st_sgd_update(&c, param + i, st_optim_grad_effective(grad[i], s), &unused_buffer);
            }
        }
        break;
    case ST_OPT_ADAM:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            st_adam_update(&c, param + i, st_optim_grad_effective(grad[i], s), m + i, v + i);
        break;
    case ST_OPT_ADAMW:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            st_adamw_update(&c, param + i, st_optim_grad_effective(grad[i], s), m + i, v + i);
        break;
    case ST_OPT_RMSPROP:
        if (m) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++)
                st_rmsprop_update(&c, param + i, st_optim_grad_effective(grad[i], s), m + i, v + i);
        } else { /* momentum 0: the buffer is never read or written */
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) {
                float unused_buffer = 0.0f;
                st_rmsprop_update(&c, param + i, st_optim_grad_effective(grad[i], s),
                                  &unused_buffer, v + i);
            }
        }
        break;
    default: ST_FAIL("optim_step: unknown optimizer kind %d", (int)d->kind);
    }
}
