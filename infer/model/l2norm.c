/*
 * l2norm.c: the L2-normalisation step of the head (layer.h, 'embedding_norm'), forward and
 * backward side by side: y = x / max(|x|, 1e-12) per row of (N, D), the row norms kept in
 * step.norms (N) for backward, which reads y, the norms and dy.
 */
#include "layer.h"

static const float NORM_EPS = 1e-12f; /* torch.nn.functional.normalize's default */

void st_l2norm_step_forward(st_model *m, const st_layer *l, int n) {
    const st_tensor y = st_step_output(m, l)->out;
    m->backend->l2norm_forward(m->backend, n, y.c, st_step_input(m, l, 0)->out.data, y.data,
                               l->step.norms, NORM_EPS);
}

void st_l2norm_step_backward(st_model *m, const st_layer *l, int n) {
    const st_layer *out = st_step_output(m, l);
    m->backend->l2norm_backward(m->backend, n, out->out.c, out->out.data, l->step.norms, out->grad,
                                st_step_dx(m, l, 0));
    st_step_finish_dx(m, l, 0, n);
}
