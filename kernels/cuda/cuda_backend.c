/*
 * cuda_backend.c: opens device 0, creates the stream, cuBLAS and cuDNN handles, the pinned
 * staging buffers and the shared device buffers, and wires the CUDA ops (cuda_ops.h) into an
 * st_backend, one member per entry of ST_BACKEND_OPS (backend.h). Called by
 * st_backend_open("cuda"); owns the context until destroy.
 *
 * Math mode: FP32 everywhere by default (cuBLAS CUBLAS_COMPUTE_32F, cuDNN CUDNN_FMA_MATH), so the
 * GPU agrees with the CPU backend to FP32 rounding. SIMTUNE_CUDA_TF32=1 allows TF32 tensor cores
 * in both libraries (about 7x the FP32 peak on H100, ~1e-3 relative error per product).
 */
#include "cuda_backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_ops.h"

enum { STAGING_HALF_BYTES = 8 << 20 };

void *cuda_scratch(st_backend *be, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (bytes > ctx->scratch_bytes) {
        /* no queued kernel may still use the old buffer */
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        if (ctx->scratch) CUDA_CHECK(cudaFree(ctx->scratch));
        ctx->scratch = NULL;
        CUDA_CHECK(cudaMalloc(&ctx->scratch, bytes));
        ctx->scratch_bytes = bytes;
    }
    return ctx->scratch;
}

void *cuda_host_result(st_backend *be, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (bytes > ctx->host_result_bytes) {
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* no copy may still target the old one */
        if (ctx->host_result) CUDA_CHECK(cudaFreeHost(ctx->host_result));
        ctx->host_result = NULL;
        CUDA_CHECK(cudaMallocHost(&ctx->host_result, bytes));
        ctx->host_result_bytes = bytes;
    }
    return ctx->host_result;
}

void cuda_workspace_reserve(st_backend *be, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (bytes <= ctx->workspace_bytes) return;
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* no queued cuDNN call still uses it */
    if (ctx->workspace) CUDA_CHECK(cudaFree(ctx->workspace));
    ctx->workspace = NULL;
    CUDA_CHECK(cudaMalloc(&ctx->workspace, bytes));
    ctx->workspace_bytes = bytes;
}

void cuda_destroy(st_backend *be) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    cuda_conv_plans_free(be);
    if (ctx->workspace) CUDA_CHECK(cudaFree(ctx->workspace));
    if (ctx->scratch) CUDA_CHECK(cudaFree(ctx->scratch));
    if (ctx->host_result) CUDA_CHECK(cudaFreeHost(ctx->host_result));
    for (int i = 0; i < 2; i++) {
        CUDA_CHECK(cudaEventDestroy(ctx->staging_free[i]));
        CUDA_CHECK(cudaFreeHost(ctx->staging[i]));
    }
    CUDNN_CHECK(cudnnDestroy(ctx->cudnn));
    CUBLAS_CHECK(cublasDestroy(ctx->cublas));
    CUDA_CHECK(cudaStreamDestroy(ctx->stream));
    free(ctx);
    free(be);
}

/* 0 with st_error_set("no CUDA device: ...") when the runtime finds no usable device. */
static int find_device(int *device) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the error so later runtime calls start clean */
        st_error_set("no CUDA device: %s (HINT: check nvidia-smi and the driver, or use "
                     "--device cpu)", cudaGetErrorString(status));
        return 0;
    }
    if (count == 0) {
        st_error_set("no CUDA device: the CUDA runtime found 0 devices (HINT: check "
                     "CUDA_VISIBLE_DEVICES, or use --device cpu)");
        return 0;
    }
    *device = 0;
    return 1;
}

static void init_context(cuda_ctx *ctx) {
    const char *tf32 = getenv("SIMTUNE_CUDA_TF32");
    ctx->allow_tf32 = tf32 && strcmp(tf32, "1") == 0;

    CUDA_CHECK(cudaSetDevice(ctx->device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    CUBLAS_CHECK(cublasSetPointerMode(ctx->cublas, CUBLAS_POINTER_MODE_HOST));
    CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, ctx->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                : CUBLAS_DEFAULT_MATH));
    CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));

    ctx->staging_half_bytes = STAGING_HALF_BYTES;
    for (int i = 0; i < 2; i++) {
        CUDA_CHECK(cudaMallocHost((void **)&ctx->staging[i], ctx->staging_half_bytes));
        CUDA_CHECK(cudaEventCreateWithFlags(&ctx->staging_free[i], cudaEventDisableTiming));
    }
}

st_backend *st_cuda_backend_create(int threads) {
    int device = 0;
    if (!find_device(&device)) return NULL;

    cuda_ctx *ctx = ST_CALLOC(1, sizeof *ctx);
    ctx->device = device;
    init_context(ctx);

    st_backend *be = ST_CALLOC(1, sizeof *be);
    be->name = "cuda";
    be->ctx = ctx;
    be->threads = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);

#define WIRE_CUDA_OP(ret, op, params) be->op = cuda_##op;
    ST_BACKEND_OPS(WIRE_CUDA_OP)
#undef WIRE_CUDA_OP
    return be;
}
