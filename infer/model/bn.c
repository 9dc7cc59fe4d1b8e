/*
 * bn.c: the batch-norm step (layer.h), forward and backward side by side, on x (N, H, W, C)
 * NHWC as rows (N*H*W, C), with a ReLU fused at the end (step.relu).
 *
 * Forward in training, where the step trains: batch statistics, saved for backward (save_mean,
 * save_rstd (C)), and the moving statistics updated with config.bn_momentum (PyTorch
 * convention); with config.sync_bn the batch is the global one over the ranks (kernels/bn_sync.h).
 * Otherwise (inference, frozen BN): the moving statistics. A frozen BN after a frozen conv is
 * folded into the conv (conv.c) and has no step.
 * Backward: dx, dgamma, dbeta from x, y (for the ReLU's mask) and the saved statistics; with
 * sync_bn dx from the global batch's sums, dgamma and dbeta this rank's part of them. Only a
 * trainable BN has a backward (a frozen one below a trainable layer is a planning error). A BN
 * that only a residual add reads (step.grad_via_add, plan.c) reads the add's output gradient,
 * which the add's backward masked in place: nothing copies the gradient to the BN.
 * In a bf16 model x comes in as bf16 from the conv before (step.bf16_in), the output goes out as
 * bf16 where only bf16 convs read it (step.bf16_out, and the backward's ReLU mask comes from
 * it), and dx as bf16 where it is a bf16 conv's dy (step.bf16_dx); plan.c decides.
 */
#include "../../kernels/check.h"
#include "layer.h"

/* sync applies to the training ops only (bn_forward_infer ignores it) */
static st_bn_desc bn_desc(const st_model *m, const st_layer *l, int n) {
    const st_tensor y = st_step_output(m, l)->out;
    return (st_bn_desc){.rows = (long)n * y.h * y.w, .c = y.c, .eps = l->step.bn_eps,
                        .momentum = m->config.bn_momentum, .relu = l->step.relu,
                        .sync = m->config.sync_bn, .x_bf16 = l->step.bf16_in,
                        .y_bf16 = l->step.bf16_out, .dx_bf16 = l->step.bf16_dx};
}

void st_bn_step_forward(st_model *m, const st_layer *l, int n, int training) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    const st_bn_desc d = bn_desc(m, l, n);
    const float *x = st_step_input(m, l, 0)->out.data;
    float *y = st_step_output(m, l)->out.data;
    if (training && s->trains)
        be->bn_forward_train(be, &d, x, s->gamma, s->beta, y, s->save_mean, s->save_rstd, s->mean,
                             s->var);
    else
        be->bn_forward_infer(be, &d, x, s->gamma, s->beta, s->mean, s->var, y);
}

void st_bn_step_backward(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    ST_CHECK(s->trains, "%s: gradient through a frozen BN below a trainable layer", l->name);
    const st_bn_desc d = bn_desc(m, l, n);
    /* the upstream gradient: the step's own, or that of the residual add this BN feeds, which
     * the add's backward has already masked by its ReLU in place */
    const st_layer *upstream = st_step_output(m, l);
    if (s->grad_via_add >= 0) upstream = st_step_output(m, &m->layers[s->grad_via_add]);
    be->bn_backward(be, &d, st_step_input(m, l, 0)->out.data, d.relu ? upstream->out.data : NULL,
                    upstream->grad, s->gamma, s->save_mean, s->save_rstd, st_step_dx(m, l, 0),
                    s->dgamma, s->dbeta);
    st_step_finish_dx(m, l, 0, n);
}
