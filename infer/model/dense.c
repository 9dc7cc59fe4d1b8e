/*
 * dense.c: the dense step of the head (layer.h), forward and backward side by side:
 * y (N, out) = x (N, in) w (in, out) + b (out), the Keras kernel layout. Layers 'embedding' and
 * 'predictions'.
 * Backward: dw, db and, when something below needs it, dx; a frozen dense layer below a
 * trainable one is a planning error.
 */
#include "../../kernels/check.h"
#include "layer.h"

void st_dense_step_forward(st_model *m, const st_layer *l, int n) {
    const st_step *s = &l->step;
    const st_tensor x = st_step_input(m, l, 0)->out, y = st_step_output(m, l)->out;
    m->backend->dense_forward(m->backend, n, x.c, y.c, x.data, s->w, s->b, y.data);
}

void st_dense_step_backward(st_model *m, const st_layer *l, int n) {
    const st_step *s = &l->step;
    ST_CHECK(s->trains, "%s: gradient through a frozen dense layer below a trainable one", l->name);
    const st_tensor x = st_step_input(m, l, 0)->out;
    const st_layer *out = st_step_output(m, l);
    float *dx = st_step_input_needs_grad(m, l, 0) ? st_step_dx(m, l, 0) : NULL;
    m->backend->dense_backward(m->backend, n, x.c, out->out.c, x.data, s->w, out->grad, dx, s->dw,
                               s->db);
    st_step_finish_dx(m, l, 0, n);
}
