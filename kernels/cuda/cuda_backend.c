/*
 * cuda_backend.c: opens device 0, creates the stream (and upload_async's copy stream), cuBLAS
 * and cuDNN handles, the pinned staging buffers and the shared device buffers, and wires the
 * CUDA ops (cuda_ops.h) into an st_backend, one member per entry of ST_BACKEND_OPS (backend.h).
 * Called by st_backend_open("cuda"); owns the context until destroy. SIMTUNE_CUDA_SYNC=1 wires
 * each op through a wrapper that synchronises and checks after it, naming the op
 * (sync_checks.h).
 *
 * Math mode, SIMTUNE_CUDA_MATH (read before the device is looked for, so a bad value is reported
 * on any machine): fp32 (default) computes in FP32 FMA everywhere (cuBLAS CUBLAS_COMPUTE_32F,
 * cuDNN CUDNN_FMA_MATH), so the GPU agrees with the CPU backend to FP32 rounding; tf32 allows
 * TF32 tensor cores on sm_80+ (cuBLAS CUBLAS_COMPUTE_32F_FAST_TF32 in gemm.cu, cuDNN
 * CUDNN_DEFAULT_MATH with FP16-converting algorithms refused in conv.cu): about 7x the FP32 peak
 * on H100, inputs rounded to 10 mantissa bits. cuBLAS's own math mode stays CUBLAS_DEFAULT_MATH;
 * the compute type of each call decides. The math mode concerns FP32 plans only: a bf16 conv plan
 * (st_conv_desc.bf16, offered on compute capability 8.0 and later) always runs cuDNN's bf16
 * tensor-core math (conv.cu).
 */
#include "cuda_backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_ops.h"
#include "sync_checks.h"

enum { STAGING_HALF_BYTES = 8 << 20 };

void *cuda_scratch(st_backend *be, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (bytes > ctx->scratch_bytes) {
        /* no queued kernel may still use the old buffer */
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        if (ctx->scratch) CUDA_CHECK(cudaFree(ctx->scratch));
        ctx->scratch = NULL;
        ctx->scratch = cuda_device_malloc(bytes, "the reduction scratch"); /* grows in a step */
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

void cuda_destroy(st_backend *be) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    cuda_conv_plans_free(be); /* and the bf16 kernel copies and scratch */
    if (ctx->workspace) CUDA_CHECK(cudaFree(ctx->workspace));
    if (ctx->scratch) CUDA_CHECK(cudaFree(ctx->scratch));
    if (ctx->host_result) CUDA_CHECK(cudaFreeHost(ctx->host_result));
    for (int i = 0; i < 2; i++) {
        CUDA_CHECK(cudaEventDestroy(ctx->staging_free[i]));
        CUDA_CHECK(cudaFreeHost(ctx->staging[i]));
    }
    CUDA_CHECK(cudaStreamSynchronize(ctx->copy_stream));
    CUDA_CHECK(cudaEventDestroy(ctx->upload_start));
    CUDA_CHECK(cudaEventDestroy(ctx->upload_done));
    CUDA_CHECK(cudaStreamDestroy(ctx->copy_stream));
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

/* SIMTUNE_CUDA_MATH into *mode (unset or empty: fp32); 0 with st_error_set naming the variable
 * for an unknown value, or when the replaced SIMTUNE_CUDA_TF32 is set (it allowed FP16
 * conversion, not TF32: a silent change of meaning would be worse than the error). */
static int read_math_mode(cuda_math_mode *mode) {
    const char *math = getenv("SIMTUNE_CUDA_MATH");
    const char *old = getenv("SIMTUNE_CUDA_TF32");
    if (old && old[0]) {
        st_error_set("SIMTUNE_CUDA_TF32 is no longer read: set SIMTUNE_CUDA_MATH=tf32 or fp32");
        return 0;
    }
    if (!math || !math[0] || strcmp(math, "fp32") == 0) *mode = CUDA_MATH_FP32;
    else if (strcmp(math, "tf32") == 0) *mode = CUDA_MATH_TF32;
    else {
        st_error_set("SIMTUNE_CUDA_MATH: unknown value '%s' (expected fp32 or tf32)", math);
        return 0;
    }
    return 1;
}

static void init_context(cuda_ctx *ctx) {
    CUDA_CHECK(cudaSetDevice(ctx->device));
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx->device));
    ctx->bf16_capable = major >= 8; /* cuDNN's bf16 convolutions need sm_80 (Ampere) or later */
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    CUBLAS_CHECK(cublasSetPointerMode(ctx->cublas, CUBLAS_POINTER_MODE_HOST));
    CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH));
    CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));

    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->copy_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&ctx->upload_start, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&ctx->upload_done, cudaEventDisableTiming));

    ctx->staging_half_bytes = STAGING_HALF_BYTES;
    for (int i = 0; i < 2; i++) {
        CUDA_CHECK(cudaMallocHost((void **)&ctx->staging[i], ctx->staging_half_bytes));
        CUDA_CHECK(cudaEventCreateWithFlags(&ctx->staging_free[i], cudaEventDisableTiming));
    }
}

st_backend *st_cuda_backend_create(int threads) {
    cuda_math_mode math = CUDA_MATH_FP32;
    if (!read_math_mode(&math)) return NULL;
    int device = 0;
    if (!find_device(&device)) return NULL;

    cuda_ctx *ctx = ST_CALLOC(1, sizeof *ctx);
    ctx->device = device;
    ctx->math = math;
    init_context(ctx);

    st_backend *be = ST_CALLOC(1, sizeof *be);
    be->name = "cuda";
    be->ctx = ctx;
    be->threads = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);

#define WIRE_CUDA_OP(ret, op, params) be->op = cuda_##op;
    ST_BACKEND_OPS(WIRE_CUDA_OP)
#undef WIRE_CUDA_OP
    const char *sync = getenv("SIMTUNE_CUDA_SYNC");
    if (sync && strcmp(sync, "1") == 0) cuda_sync_checks_install(be); /* debugging: slow */
    return be;
}
