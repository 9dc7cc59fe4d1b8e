/*
 * cuda_ops.h: the CUDA implementations behind the backend vtable, one family per file, mirroring
 * kernels/cpu/cpu_ops.h:
 *   memory.cu     alloc/free/upload/download/copy/sync, fill, scale, axpy, sum_squares, all_finite
 *   gemm.cu       gemm (cuBLAS, row-major through the column-major swap), dense forward/backward
 *   conv.cu       convolution plans, forward, backward data/filter (cuDNN), BN folding
 *   batchnorm.cu  batch norm train/infer/backward (fused ReLU)
 *   activation.cu relu forward/backward, residual add
 *   pool.cu       max pool (zero or -inf padding), global avg/max/GeM pooling
 *   l2norm.cu     row L2 normalisation
 *   xent.cu       softmax cross-entropy with label smoothing
 *   triplet.cu    batch-hard / batch-all triplet loss with its gradient
 *   optim.cu      SGD / Adam / AdamW / RMSprop step over an arena slice
 *   topk.cu       top-k merge of a score tile
 * Semantics of each function are those of the matching st_backend member (backend.h).
 *
 * Execution model: every op is enqueued on the one stream of the context, in call order, so ops
 * never race with each other; download, sync and the ops returning host values (sum_squares,
 * all_finite, triplet_loss stats) wait for the stream. Buffers owned by the context (workspace,
 * scratch) are therefore safe to share between ops.
 * Declared extern "C": the .cu files are C++, the wiring (cuda_backend.c) is C.
 */
#ifndef ST_CUDA_OPS_H
#define ST_CUDA_OPS_H

#include "../backend.h"
#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuda_ctx {
    int device;
    cudaStream_t stream;        /* every op runs on this stream */
    cublasHandle_t cublas;      /* bound to stream */
    cudnnHandle_t cudnn;        /* bound to stream */
    int allow_tf32;             /* env SIMTUNE_CUDA_TF32=1; default 0: plain FP32 FMA math */

    void *workspace;            /* cuDNN workspace: max over conv plans, grown at plan time */
    size_t workspace_bytes;

    char *staging[2];           /* pinned host halves for upload/download, used alternately */
    cudaEvent_t staging_free[2];/* recorded after the copy that last used each half */
    size_t staging_half_bytes;

    void *scratch;              /* device scratch for reductions; one carve-up per op call */
    size_t scratch_bytes;
    void *host_result;          /* pinned host bytes for small results of reductions */
    size_t host_result_bytes;

    st_conv_plan *plans;        /* cache, one plan per distinct st_conv_desc */
} cuda_ctx;

static inline cuda_ctx *cuda_ctx_of(st_backend *be) { return (cuda_ctx *)be->ctx; }

/* Device scratch of at least `bytes`, valid until the next cuda_scratch call (growing frees the
 * old buffer after the device is idle). An op calls it once and carves the result. */
void *cuda_scratch(st_backend *be, size_t bytes);
/* Pinned host buffer of at least `bytes` for results copied back by reductions. */
void *cuda_host_result(st_backend *be, size_t bytes);
/* Grow the shared cuDNN workspace to at least `bytes` (called when a plan is made). */
void cuda_workspace_reserve(st_backend *be, size_t bytes);

void *cuda_alloc(st_backend *be, size_t bytes);
void cuda_free(st_backend *be, void *ptr);
void cuda_upload(st_backend *be, void *dst, const void *host_src, size_t bytes);
void cuda_download(st_backend *be, void *host_dst, const void *src, size_t bytes);
void cuda_copy(st_backend *be, void *dst, const void *src, size_t bytes);
void cuda_sync(st_backend *be);
void cuda_fill(st_backend *be, float *x, float value, size_t n);
void cuda_scale(st_backend *be, float *x, float alpha, size_t n);
void cuda_axpy(st_backend *be, float *y, float alpha, const float *x, size_t n);
double cuda_sum_squares(st_backend *be, const float *x, size_t n);
int cuda_all_finite(st_backend *be, const float *x, size_t n);

void cuda_gemm(st_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void cuda_dense_forward(st_backend *be, int n, int in, int out, const float *x, const float *w,
                        const float *b, float *y);
void cuda_dense_backward(st_backend *be, int n, int in, int out, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *db);
/* Column sums of a row-major (rows, c) matrix into out (c), overwritten; deterministic order.
 * Shared by dense db, conv dbias. */
void cuda_column_sums(st_backend *be, long rows, int c, const float *x, float *out);

st_conv_plan *cuda_conv_plan(st_backend *be, const st_conv_desc *d);
void cuda_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                       const float *bias, float *y);
void cuda_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy, const float *w,
                             float *dx);
void cuda_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                               float *dw, float *dbias);
void cuda_conv_fold_bn(st_backend *be, const st_conv_desc *d, const float *w, const float *b,
                       const float *gamma, const float *beta, const float *mean, const float *var,
                       float eps, float *w_out, float *b_out);
void cuda_conv_plans_free(st_backend *be); /* called by destroy */

void cuda_bn_forward_train(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                           const float *beta, float *y, float *save_mean, float *save_rstd,
                           float *running_mean, float *running_var);
void cuda_bn_forward_infer(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                           const float *beta, const float *running_mean, const float *running_var,
                           float *y);
void cuda_bn_backward(st_backend *be, const st_bn_desc *d, const float *x, const float *y,
                      const float *dy, const float *gamma, const float *save_mean,
                      const float *save_rstd, float *dx, float *dgamma, float *dbeta);

void cuda_relu_forward(st_backend *be, const float *x, float *y, size_t n);
void cuda_relu_backward(st_backend *be, const float *y, const float *dy, float *dx, size_t n);
void cuda_add_forward(st_backend *be, const float *a, const float *b, float *y, size_t n, int relu);

void cuda_maxpool_forward(st_backend *be, const st_pool_desc *d, const float *x, float *y);
void cuda_maxpool_backward(st_backend *be, const st_pool_desc *d, const float *x, const float *y,
                           const float *dy, float *dx);
void cuda_gpool_forward(st_backend *be, const st_gpool_desc *d, const float *x, float *y);
void cuda_gpool_backward(st_backend *be, const st_gpool_desc *d, const float *x, const float *y,
                         const float *dy, float *dx);

void cuda_l2norm_forward(st_backend *be, int n, int d, const float *x, float *y, float *norms,
                         float eps);
void cuda_l2norm_backward(st_backend *be, int n, int d, const float *y, const float *norms,
                          const float *dy, float *dx);

void cuda_xent_forward(st_backend *be, int n, int k, const float *logits, const int32_t *labels,
                       float smoothing, float *probs, float *loss_rows);
void cuda_xent_backward(st_backend *be, int n, int k, const float *probs, const int32_t *labels,
                        float smoothing, float scale, float *dlogits);

void cuda_triplet_loss(st_backend *be, const st_triplet_desc *d, const float *emb,
                       const int32_t *labels, float *dist, float *demb, st_triplet_stats *stats);

void cuda_optim_step(st_backend *be, const st_optim_desc *d, float *param, const float *grad,
                     float *m, float *v, size_t n);

void cuda_topk_merge(st_backend *be, int q, int tile, int64_t base, int k, int larger_is_better,
                     const float *scores, float *best_scores, int64_t *best_index);

#ifdef __cplusplus
}
#endif
#endif
