/*
 * conv.c: the convolution step, forward and backward side by side, and the batch-norm fold of a
 * frozen conv (layer.h).
 *
 * A conv step reads input x (N, H, W, C) NHWC, its padding (a fused ZeroPadding2D's or its own)
 * in the descriptor step.conv, and writes y (N, P, Q, K), with a BN folded into it when both are
 * frozen (step.fold_bn: kernel and bias w_fold, b_fold in the params arena) and a ReLU fused at
 * the end (step.relu, in the descriptor). step.plan is the full-batch plan; a partial batch
 * plans again (the backend caches plans per descriptor).
 * Backward: dw, db from x and dy (trainable convs only), dx = backward-data(dy, w) when
 * something below needs it, both in one conv_backward call. A folded conv never trains, so
 * backward never sees w_fold.
 * Each pass is timed into its own --profile row (profile.c); in bf16 (config.precision, set in
 * the descriptor by plan.c) the backend rounds its inputs to bf16 inside the same calls, and
 * keeps a kernel's bf16 copy until told the kernel changed (conv_weights_changed: after a
 * trainable conv's backward here, for every kernel in model.c's st_model_weights_changed).
 */
#include "layer.h"

/* The step's plan for the first n images. */
static st_conv_plan *plan_for(st_model *m, const st_step *s, int n) {
    if (n == s->conv.n) return s->plan;
    st_conv_desc d = s->conv;
    d.n = n;
    return m->backend->conv_plan(m->backend, &d);
}

void st_conv_step_forward(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    const float *x = st_step_input(m, l, 0)->out.data;
    float *y = st_step_output(m, l)->out.data;
    st_conv_plan *plan = plan_for(m, s, n);
    st_profile_mark mark = st_profile_begin(m);
    if (s->fold_bn >= 0)
        be->conv_forward(be, plan, x, s->w_fold, s->b_fold, y);
    else
        be->conv_forward(be, plan, x, s->w, s->b, y);
    st_profile_end(m, ST_PROF_CONV_FWD, mark);
}

/* --profile: the backward call's time (its reorders already moved to their row) goes to the
 * backward-weights row when the conv trains, less its backward-data pass, which goes to that
 * row; the accumulation of dx is timed into the backward-data row by the caller. */
static void profile_backward_end(st_model *m, st_profile_mark mark, int trains, int data,
                                 double data_seconds) {
    if (!m->profile) return;
    if (!trains) {
        st_profile_end(m, ST_PROF_CONV_BWD_DATA, mark);
        return;
    }
    st_profile_end(m, ST_PROF_CONV_BWD_WEIGHTS, mark);
    if (!data) return;
    m->profile->seconds[ST_PROF_CONV_BWD_WEIGHTS] -= data_seconds;
    m->profile->seconds[ST_PROF_CONV_BWD_DATA] += data_seconds;
}

/* Both passes in one backend call, which converts dy once for them. */
void st_conv_step_backward(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    const float *x = st_step_input(m, l, 0)->out.data;
    const float *dy = st_step_output(m, l)->grad;
    st_conv_plan *plan = plan_for(m, s, n);
    const int data = st_step_input_needs_grad(m, l, 0);
    double data_seconds = 0;
    st_profile_mark mark = st_profile_begin(m);
    be->conv_backward(be, plan, x, dy, s->w, s->trains ? s->dw : NULL,
                      s->trains ? s->db : NULL, data ? st_step_dx(m, l, 0) : NULL,
                      m->profile ? &data_seconds : NULL);
    profile_backward_end(m, mark, s->trains, data, data_seconds);
    if (data) {
        mark = st_profile_begin(m);
        st_step_finish_dx(m, l, 0, n);
        st_profile_end(m, ST_PROF_CONV_BWD_DATA, mark);
    }
    /* The optimizer step that follows a backward updates w: what the backend derived from it
     * (its bf16 copy, made by the forward) goes stale. */
    if (s->trains) be->conv_weights_changed(be, s->w, 0);
}

void st_conv_step_fold(st_model *m, const st_layer *l) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    be->conv_fold_bn(be, s->plan, s->w, s->b, s->gamma, s->beta, s->mean, s->var, s->bn_eps,
                     s->w_fold, s->b_fold);
}
