/* cpu_backend.c: wires the CPU op implementations (cpu_ops.h) into an st_backend. */
#include "cpu_backend.h"

#include <omp.h>
#include <stdlib.h>

#include "../check.h"
#include "cpu_ops.h"

static void cpu_destroy(st_backend *be) {
    cpu_conv_plans_free(be);
    free(be);
}

st_backend *st_cpu_backend_create(int threads) {
    st_backend *be = ST_CALLOC(1, sizeof *be);
    be->name = "cpu";
    be->threads = threads > 0 ? threads : omp_get_num_procs();
    omp_set_num_threads(be->threads);

    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->copy = cpu_copy;
    be->sync = cpu_sync;
    be->destroy = cpu_destroy;

    be->fill = cpu_fill;
    be->scale = cpu_scale;
    be->axpy = cpu_axpy;
    be->sum_squares = cpu_sum_squares;
    be->all_finite = cpu_all_finite;
    be->gemm = cpu_gemm;

    be->conv_plan = cpu_conv_plan;
    be->conv_forward = cpu_conv_forward;
    be->conv_backward_data = cpu_conv_backward_data;
    be->conv_backward_filter = cpu_conv_backward_filter;
    be->conv_fold_bn = cpu_conv_fold_bn;

    be->bn_forward_train = cpu_bn_forward_train;
    be->bn_forward_infer = cpu_bn_forward_infer;
    be->bn_backward = cpu_bn_backward;

    be->relu_forward = cpu_relu_forward;
    be->relu_backward = cpu_relu_backward;
    be->add_forward = cpu_add_forward;

    be->maxpool_forward = cpu_maxpool_forward;
    be->maxpool_backward = cpu_maxpool_backward;
    be->gpool_forward = cpu_gpool_forward;
    be->gpool_backward = cpu_gpool_backward;

    be->dense_forward = cpu_dense_forward;
    be->dense_backward = cpu_dense_backward;
    be->l2norm_forward = cpu_l2norm_forward;
    be->l2norm_backward = cpu_l2norm_backward;
    be->xent_forward = cpu_xent_forward;
    be->xent_backward = cpu_xent_backward;
    be->triplet_loss = cpu_triplet_loss;
    be->optim_step = cpu_optim_step;
    be->topk_merge = cpu_topk_merge;
    return be;
}
