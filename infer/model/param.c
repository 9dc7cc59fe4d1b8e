/*
 * param.c: a parameter between its file layout on the host and its storage on the device; the
 * one place that converts (model.h: st_param_storage_numel, st_param_upload,
 * st_param_download).
 *
 * Host side: p->numel floats in the Keras shape p->dims (HWIO conv kernels, (in, out) dense
 * kernels, vectors). Device side: st_param_storage_numel(m, p) floats in the backend's layout,
 * for the parameter value and for every buffer of the same shape (gradient, optimizer moments).
 * A conv kernel (p->rank == 4) is stored in its backend's layout (kernels/backend.h: oneDNN's
 * blocked layout on the CPU, KRSC on CUDA), converted by the conv ops conv_weights_import /
 * conv_weights_export of the conv layer m->layers[p->layer_index]'s plan (step.plan; plans
 * exist from planning on, before the arenas are sized). Every other parameter is stored in its
 * file layout, and a copy is a plain upload or download.
 * Callers: the model module (memory layout, init), infer/weights_h5.c, infer/embedder.c,
 * train/checkpoint.c, train/trainer.c (optimizer state, copies between models), tests.
 */
#include "layer.h"

#include "../../kernels/check.h"

/* The conv plan whose layout stores p: the plan of its conv layer for a conv kernel, NULL for
 * every other parameter. */
static st_conv_plan *kernel_plan(const st_model *m, const st_param *p) {
    if (p->rank != 4) return NULL;
    st_conv_plan *plan = m->layers[p->layer_index].step.plan;
    ST_CHECK(plan, "%s/%s: conv kernel without a conv plan", p->layer, p->weight);
    return plan;
}

size_t st_param_storage_numel(const st_model *m, const st_param *p) {
    st_conv_plan *plan = kernel_plan(m, p);
    return plan ? m->backend->conv_weights_numel(m->backend, plan) : p->numel;
}

void st_param_upload(const st_model *m, const st_param *p, const float *host, float *device) {
    st_conv_plan *plan = kernel_plan(m, p);
    if (plan) m->backend->conv_weights_import(m->backend, plan, host, device);
    else m->backend->upload(m->backend, device, host, p->numel * sizeof *host);
}

void st_param_download(const st_model *m, const st_param *p, const float *device, float *host) {
    st_conv_plan *plan = kernel_plan(m, p);
    if (plan) m->backend->conv_weights_export(m->backend, plan, device, host);
    else m->backend->download(m->backend, host, device, p->numel * sizeof *host);
}
