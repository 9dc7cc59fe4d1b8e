/*
 * pool.c: the pooling steps (layer.h), forward and backward side by side.
 *   max-pool      x (N, H, W, C) -> y (N, P, Q, C), zero padding from a fused ZeroPadding2D
 *                 (step.pool); backward routes dy to the argmax, found again from x and y.
 *   global pool   the head's avg_pool, x (N, H, W, C) -> y (N, C), average, max or GeM
 *                 (step.gpool, config.pool); backward from x, y and dy.
 * The descriptors are planned for the full batch; each call narrows them to n images.
 */
#include "layer.h"

void st_pool_step_forward(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const float *x = st_step_input(m, l, 0)->out.data;
    float *y = st_step_output(m, l)->out.data;
    if (l->kind == ST_LAYER_MAXPOOL) {
        st_pool_desc d = l->step.pool;
        d.n = n;
        be->maxpool_forward(be, &d, x, y);
    } else {
        st_gpool_desc d = l->step.gpool;
        d.n = n;
        be->gpool_forward(be, &d, x, y);
    }
}

void st_pool_step_backward(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const float *x = st_step_input(m, l, 0)->out.data;
    const st_layer *out = st_step_output(m, l);
    float *dx = st_step_dx(m, l, 0);
    if (l->kind == ST_LAYER_MAXPOOL) {
        st_pool_desc d = l->step.pool;
        d.n = n;
        be->maxpool_backward(be, &d, x, out->out.data, out->grad, dx);
    } else {
        st_gpool_desc d = l->step.gpool;
        d.n = n;
        be->gpool_backward(be, &d, x, out->out.data, out->grad, dx);
    }
    st_step_finish_dx(m, l, 0, n);
}
