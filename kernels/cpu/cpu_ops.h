/*
 * cpu_ops.h: the CPU implementations behind the backend vtable, one family per file:
 *   memory.c     alloc/free/upload/download/copy/sync, "pinned" memory and upload_async (plain
 *                memory, memcpy), mem_info, fill, scale, axpy, sum_squares, all_finite
 *   gemm.c       gemm (OpenBLAS), dense forward/backward
 *   conv.c       convolution plans, forward, backward data/filter (oneDNN; fp32 or bf16) and
 *                both in one call (training's backward: dy rounded to bf16 once),
 *                kernel layout conversion (HWIO <-> oneDNN's blocked layout), BN folding
 *   batchnorm.c  batch norm train/infer/backward (fused ReLU)
 *   activation.c relu forward/backward, residual add
 *   pool.c       max pool (zero or -inf padding), global avg/max/GeM pooling
 *   l2norm.c     row L2 normalisation
 *   xent.c       softmax cross-entropy with label smoothing
 *   triplet.c    batch-hard / batch-all triplet loss with its gradient
 *   optim.c      gradient norm verdict (status), SGD / Adam / AdamW / RMSprop step
 *   topk.c       top-k merge of a score tile
 *   cpu_backend.c destroy, and the wiring of every op into an st_backend
 * Semantics of each function are those of the matching st_backend member: its entry in the op
 * list ST_BACKEND_OPS (backend.h), from which the declarations below are generated.
 */
#ifndef ST_CPU_OPS_H
#define ST_CPU_OPS_H

#include "../backend.h"

/* cpu_<op> for every op of ST_BACKEND_OPS (backend.h), e.g.
 * void cpu_axpy(st_backend *be, float *y, float alpha, const float *x, size_t n); */
#define CPU_DECLARE_OP(ret, op, params) ret cpu_##op params;
ST_BACKEND_OPS(CPU_DECLARE_OP)
#undef CPU_DECLARE_OP

void cpu_conv_plans_free(st_backend *be); /* conv.c; called by destroy */

#endif
