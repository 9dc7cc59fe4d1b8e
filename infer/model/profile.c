/*
 * profile.c: what a step of the model costs (model.h): the FLOPs the walks compute, counted from
 * the step descriptors, and the --profile timers (st_profile_begin/end) that the walks
 * (model.c, conv.c) and callers (bench: loss, optimizer) put around their work; plus the names
 * of the precision setting.
 *
 * Timers sync the backend before reading the clock, so a CUDA step is measured when it has run,
 * not when it was queued; that sync costs a little on CUDA, which is why timing is off unless a
 * caller sets m->profile. Reorders that a backend runs inside an op (cpu convs: weight layout
 * bridges, bf16 copies) are timed by the backend (be->reorder_seconds, while be->profile) and
 * moved from the op's row to ST_PROF_REORDER.
 */
#include <string.h>

#include "../../kernels/check.h"
#include "data/base/clock.h"
#include "layer.h"

static const char *const PROF_NAMES[ST_PROF_ROWS] = {
    [ST_PROF_CONV_FWD] = "conv_fwd",         [ST_PROF_CONV_BWD_DATA] = "conv_bwd_data",
    [ST_PROF_CONV_BWD_WEIGHTS] = "conv_bwd_weights", [ST_PROF_REORDER] = "reorder",
    [ST_PROF_BN_FWD] = "bn_fwd",             [ST_PROF_BN_BWD] = "bn_bwd",
    [ST_PROF_ELTWISE_FWD] = "eltwise_fwd",   [ST_PROF_ELTWISE_BWD] = "eltwise_bwd",
    [ST_PROF_POOL_FWD] = "pool_fwd",         [ST_PROF_POOL_BWD] = "pool_bwd",
    [ST_PROF_HEAD_FWD] = "head_fwd",         [ST_PROF_HEAD_BWD] = "head_bwd",
    [ST_PROF_LOSS] = "loss",                 [ST_PROF_OPTIMIZER] = "optimizer"};

const char *st_prof_row_name(st_prof_row row) {
    ST_CHECK(row >= 0 && row < ST_PROF_ROWS, "profile row %d out of range", (int)row);
    return PROF_NAMES[row];
}

int st_precision_parse(const char *name, st_precision *out) {
    if (name && !strcmp(name, "fp32")) *out = ST_PRECISION_FP32;
    else if (name && !strcmp(name, "bf16")) *out = ST_PRECISION_BF16;
    else return -1;
    return 0;
}

const char *st_precision_name(st_precision p) { return p == ST_PRECISION_BF16 ? "bf16" : "fp32"; }

/* Multiply-adds x 2 of one pass of a conv step on n images. */
static double conv_pass_flops(const st_conv_desc *d, int n) {
    return 2.0 * n * d->p * d->q * d->k * d->r * d->s * d->c;
}

st_model_flops st_model_count_flops(const st_model *m, int n, int training) {
    st_model_flops f = {0};
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        double pass;
        if (l->kind == ST_LAYER_CONV)
            pass = conv_pass_flops(&l->step.conv, n);
        else if (l->kind == ST_LAYER_DENSE)
            pass = 2.0 * n * st_step_input(m, l, 0)->out.c * st_step_output(m, l)->out.c;
        else
            continue;
        f.forward += pass;
        if (!training || !l->step.needs_grad) continue;
        if (l->step.trains) f.backward_weights += pass;
        if (st_step_input_needs_grad(m, l, 0)) f.backward_data += pass;
    }
    return f;
}

st_profile_mark st_profile_begin(st_model *m) {
    st_profile_mark mark = {0, 0};
    if (!m->profile) return mark;
    m->backend->profile = 1;
    m->backend->sync(m->backend);
    mark.t = st_now_seconds();
    mark.reorder = m->backend->reorder_seconds;
    return mark;
}

void st_profile_end(st_model *m, st_prof_row row, st_profile_mark mark) {
    if (!m->profile) return;
    m->backend->sync(m->backend);
    double reorder = m->backend->reorder_seconds - mark.reorder;
    m->profile->seconds[row] += st_now_seconds() - mark.t - reorder;
    m->profile->calls[row]++;
    m->profile->seconds[ST_PROF_REORDER] += reorder;
    if (reorder > 0) m->profile->calls[ST_PROF_REORDER]++;
}
