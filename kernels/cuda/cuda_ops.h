/*
 * cuda_ops.h: the CUDA implementations behind the backend vtable, one family per file, mirroring
 * kernels/cpu/cpu_ops.h:
 *   memory.cu     alloc/free/upload/download/copy/sync, pinned host memory and upload_async,
 *                 mem_info, fill, scale, axpy, sum_squares, all_finite
 *   gemm.cu       gemm (cuBLAS, row-major through the column-major swap), dense forward/backward
 *   conv.cu       convolution plans, forward, backward data/filter (cuDNN), kernel layout
 *                 conversion (HWIO <-> KRSC), BN folding
 *   conv_backward.c  both backward passes in one call (training's conv_backward)
 *   batchnorm.cu  batch norm train/infer/backward (fused ReLU)
 *   activation.cu relu forward/backward, residual add
 *   pool.cu       max pool (zero or -inf padding), global avg/max/GeM pooling
 *   l2norm.cu     row L2 normalisation
 *   xent.cu       softmax cross-entropy with label smoothing
 *   triplet.cu    batch-hard / batch-all triplet loss with its gradient
 *   optim.cu      gradient norm verdict (device status), SGD / Adam / AdamW / RMSprop step
 *   topk.cu       top-k merge of a score tile
 *   cuda_backend.c context creation, destroy, and the wiring of every op into an st_backend
 * Semantics of each function are those of the matching st_backend member: its entry in the op
 * list ST_BACKEND_OPS (backend.h), from which the declarations below are generated.
 *
 * Execution model: every op is enqueued on the one stream of the context, in call order, so ops
 * never race with each other; download, sync and the ops returning host values (sum_squares,
 * all_finite) wait for the stream. Buffers owned by the context (workspace,
 * scratch) are therefore safe to share between ops.
 * Declared extern "C" (the generated declarations included): the .cu files are C++, the wiring
 * (cuda_backend.c) is C. A .cu definition whose parameters differ from its ST_BACKEND_OPS entry
 * is a compile error (two C-linkage functions of one name).
 */
#ifndef ST_CUDA_OPS_H
#define ST_CUDA_OPS_H

#include "../backend.h"
#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SIMTUNE_CUDA_MATH: how cuDNN and cuBLAS may compute FP32 products (docs/gpu.md). */
typedef enum {
    CUDA_MATH_FP32, /* default: FMA, no tensor cores (cuDNN FMA math, cuBLAS COMPUTE_32F) */
    CUDA_MATH_TF32  /* TF32 tensor cores on sm_80+, never an FP16 conversion */
} cuda_math_mode;

typedef struct cuda_kernel16 cuda_kernel16; /* conv.cu: a conv kernel's cached bf16 copy */

typedef struct cuda_ctx {
    int device;
    int bf16_capable;           /* compute capability 8.0 or later: bf16 tensor-core convs */
    cudaStream_t stream;        /* every op runs on this stream */
    cublasHandle_t cublas;      /* bound to stream */
    cudnnHandle_t cudnn;        /* bound to stream */
    cuda_math_mode math;        /* env SIMTUNE_CUDA_MATH, read once at create */

    void *workspace;            /* cuDNN workspace: max over ready conv plans, set at plan time */
    size_t workspace_bytes;
    void *bf16_scratch;         /* bf16 operands of one conv call (x, y or dy, dw): max over
                                 * ready bf16 plans, set at plan time like the workspace */
    size_t bf16_scratch_bytes;
    cuda_kernel16 *kernels16;   /* bf16 copies of conv kernels, one per FP32 kernel buffer */

    cudaStream_t copy_stream;   /* upload_async copies; ordered against stream by the events */
    cudaEvent_t upload_start;   /* recorded on stream: what a copy must wait for */
    cudaEvent_t upload_done;    /* recorded on copy_stream: what later ops wait for */

    char *staging[2];           /* pinned host halves for upload/download, used alternately */
    cudaEvent_t staging_free[2];/* recorded after the copy that last used each half */
    size_t staging_half_bytes;

    void *scratch;              /* device scratch for reductions; one carve-up per op call */
    size_t scratch_bytes;
    void *host_result;          /* pinned host bytes for small results of reductions */
    size_t host_result_bytes;

    st_conv_plan *plans;        /* cache, one plan per distinct st_conv_desc (conv.cu) */
    unsigned long long plan_clock; /* counts plan uses: the LRU order of the conv plans */
} cuda_ctx;

static inline cuda_ctx *cuda_ctx_of(st_backend *be) { return (cuda_ctx *)be->ctx; }

/* Device scratch of at least `bytes`, valid until the next cuda_scratch call (growing frees the
 * old buffer after the device is idle). An op calls it once and carves the result. */
void *cuda_scratch(st_backend *be, size_t bytes);
/* cudaMalloc of `bytes` (memory.cu); out of device memory stops naming `what`, the bytes asked,
 * the bytes free (cudaMemGetInfo) and the hint of a smaller batch. Not zeroed. */
void *cuda_device_malloc(size_t bytes, const char *what);
/* Pinned host buffer of at least `bytes` for results copied back by reductions. */
void *cuda_host_result(st_backend *be, size_t bytes);

/* cuda_<op> for every op of ST_BACKEND_OPS (backend.h), e.g.
 * void cuda_axpy(st_backend *be, float *y, float alpha, const float *x, size_t n); */
#define CUDA_DECLARE_OP(ret, op, params) ret cuda_##op params;
ST_BACKEND_OPS(CUDA_DECLARE_OP)
#undef CUDA_DECLARE_OP

/* Column sums of a row-major (rows, c) matrix into out (c), overwritten; deterministic order,
 * in double. x holds FP32 values, or bf16 bit patterns when x_bf16 (widened). Shared by dense db,
 * conv dbias (a bf16 plan's: the sums of its bf16 dy). */
void cuda_column_sums(st_backend *be, long rows, int c, const float *x, int x_bf16, float *out);
void cuda_conv_plans_free(st_backend *be); /* conv.cu; called by destroy */

#ifdef __cplusplus
}
#endif
#endif
