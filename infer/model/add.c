/*
 * add.c: the residual add step (layer.h), forward and backward side by side: y = a + b over
 * (N, H, W, C), a ReLU fused at the end (step.relu, Keras v1 and torchvision <p>_out). The add
 * may write over one of its inputs in place (memory.c plans it).
 * Backward: the gradient passes to both inputs unchanged but for the ReLU's mask (read from
 * y), applied in place to the output's gradient; then copied to the first consumer's gradient,
 * added to one another consumer already wrote. A BN input reads the masked gradient through
 * the add (step.grad_via_add, plan.c), so the add writes nothing for it: one mask pass and one
 * copy (identity shortcut) or the mask alone (projection) instead of a mask and two copies.
 */
#include "layer.h"

void st_add_step_forward(st_model *m, const st_layer *l, int n) {
    const st_tensor y = st_step_output(m, l)->out;
    m->backend->add_forward(m->backend, st_step_input(m, l, 0)->out.data,
                            st_step_input(m, l, 1)->out.data, y.data, st_batch_numel(y, n),
                            l->step.relu);
}

/* Whether input k takes its gradient from this add (a BN reading it through the add does not). */
static int writes_input_grad(const st_model *m, const st_layer *l, int k) {
    const st_layer *src = &m->layers[st_step_input(m, l, k)->exec];
    return st_step_input_needs_grad(m, l, k) && src->step.grad_via_add != l - m->layers;
}

void st_add_step_backward(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    const st_layer *out = st_step_output(m, l);
    size_t count = st_batch_numel(out->out, n);
    /* the ReLU's mask in place: the BNs read through this add and its own copies below all
     * want the masked gradient, and nothing reads the unmasked one after this step */
    if (s->relu) be->relu_backward(be, out->out.data, out->grad, out->grad, count);
    for (int k = 0; k < 2; k++) {
        if (!writes_input_grad(m, l, k)) continue;
        float *dx = st_step_input(m, l, k)->grad;
        if (s->accumulate[k])
            be->axpy(be, dx, 1.0f, out->grad, count);
        else
            be->copy(be, dx, out->grad, count * sizeof(float));
    }
}
