/*
 * cpu_ops.h: the CPU implementations behind the backend vtable, one family per file:
 *   memory.c     alloc/free/upload/download/copy/sync, fill, scale, axpy, sum_squares, all_finite
 *   gemm.c       gemm (OpenBLAS), dense forward/backward
 *   conv.c       convolution plans, forward, backward data/filter (oneDNN), BN folding
 *   batchnorm.c  batch norm train/infer/backward (fused ReLU)
 *   activation.c relu forward/backward, residual add
 *   pool.c       max pool (zero or -inf padding), global avg/max/GeM pooling
 *   l2norm.c     row L2 normalisation
 *   xent.c       softmax cross-entropy with label smoothing
 *   triplet.c    batch-hard / batch-all triplet loss with its gradient
 *   optim.c      SGD / Adam / AdamW / RMSprop step over an arena slice
 *   topk.c       top-k merge of a score tile
 * Semantics of each function are those of the matching st_backend member (backend.h).
 */
#ifndef ST_CPU_OPS_H
#define ST_CPU_OPS_H

#include "../backend.h"

void *cpu_alloc(st_backend *be, size_t bytes);
void cpu_free(st_backend *be, void *ptr);
void cpu_upload(st_backend *be, void *dst, const void *host_src, size_t bytes);
void cpu_download(st_backend *be, void *host_dst, const void *src, size_t bytes);
void cpu_copy(st_backend *be, void *dst, const void *src, size_t bytes);
void cpu_sync(st_backend *be);
void cpu_fill(st_backend *be, float *x, float value, size_t n);
void cpu_scale(st_backend *be, float *x, float alpha, size_t n);
void cpu_axpy(st_backend *be, float *y, float alpha, const float *x, size_t n);
double cpu_sum_squares(st_backend *be, const float *x, size_t n);
int cpu_all_finite(st_backend *be, const float *x, size_t n);

void cpu_gemm(st_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void cpu_dense_forward(st_backend *be, int n, int in, int out, const float *x, const float *w,
                       const float *b, float *y);
void cpu_dense_backward(st_backend *be, int n, int in, int out, const float *x, const float *w,
                        const float *dy, float *dx, float *dw, float *db);

st_conv_plan *cpu_conv_plan(st_backend *be, const st_conv_desc *d);
void cpu_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                      const float *bias, float *y);
void cpu_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy, const float *w,
                            float *dx);
void cpu_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                              float *dw, float *dbias);
void cpu_conv_fold_bn(st_backend *be, const st_conv_desc *d, const float *w, const float *b,
                      const float *gamma, const float *beta, const float *mean, const float *var,
                      float eps, float *w_out, float *b_out);
void cpu_conv_plans_free(st_backend *be); /* called by destroy */

void cpu_bn_forward_train(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                          const float *beta, float *y, float *save_mean, float *save_rstd,
                          float *running_mean, float *running_var);
void cpu_bn_forward_infer(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                          const float *beta, const float *running_mean, const float *running_var,
                          float *y);
void cpu_bn_backward(st_backend *be, const st_bn_desc *d, const float *x, const float *y,
                     const float *dy, const float *gamma, const float *save_mean,
                     const float *save_rstd, float *dx, float *dgamma, float *dbeta);

void cpu_relu_forward(st_backend *be, const float *x, float *y, size_t n);
void cpu_relu_backward(st_backend *be, const float *y, const float *dy, float *dx, size_t n);
void cpu_add_forward(st_backend *be, const float *a, const float *b, float *y, size_t n, int relu);

void cpu_maxpool_forward(st_backend *be, const st_pool_desc *d, const float *x, float *y);
void cpu_maxpool_backward(st_backend *be, const st_pool_desc *d, const float *x, const float *y,
                          const float *dy, float *dx);
void cpu_gpool_forward(st_backend *be, const st_gpool_desc *d, const float *x, float *y);
void cpu_gpool_backward(st_backend *be, const st_gpool_desc *d, const float *x, const float *y,
                        const float *dy, float *dx);

void cpu_l2norm_forward(st_backend *be, int n, int d, const float *x, float *y, float *norms,
                        float eps);
void cpu_l2norm_backward(st_backend *be, int n, int d, const float *y, const float *norms,
                         const float *dy, float *dx);

void cpu_xent_forward(st_backend *be, int n, int k, const float *logits, const int32_t *labels,
                      float smoothing, float *probs, float *loss_rows);
void cpu_xent_backward(st_backend *be, int n, int k, const float *probs, const int32_t *labels,
                       float smoothing, float scale, float *dlogits);

void cpu_triplet_loss(st_backend *be, const st_triplet_desc *d, const float *emb,
                      const int32_t *labels, float *dist, float *demb, st_triplet_stats *stats);

void cpu_optim_step(st_backend *be, const st_optim_desc *d, float *param, const float *grad,
                    float *m, float *v, size_t n);

void cpu_topk_merge(st_backend *be, int q, int tile, int64_t base, int k, int larger_is_better,
                    const float *scores, float *best_scores, int64_t *best_index);

#endif
