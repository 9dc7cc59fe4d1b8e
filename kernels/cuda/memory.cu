/*
 * memory.cu: device memory, host<->device transfers and the BLAS-1 style ops of the CUDA backend.
 *
 *   alloc     cudaMalloc (256-byte aligned, so the 64-byte contract holds), zeroed on the stream
 *   upload    pageable host -> pinned staging half -> async copy on the stream; returns once the
 *             host buffer has been read (the device copy may still be in flight)
 *   download  async copies into the pinned halves, drained to the host buffer as they land;
 *             returns when every byte is on the host (and so every earlier op has finished)
 *   host_alloc / upload_async / upload_fence: page-locked buffers (the loader's batch ring)
 *             copied on a second stream, ordered against the compute stream by two events, so
 *             the host never waits for a batch upload and the copy can run beside compute
 *   mem_info  cudaMemGetInfo
 *   sum_squares / all_finite: deterministic two-pass reductions, results read back pinned.
 */
#include <string.h>

#include "device.cuh"

extern "C" void *cuda_device_malloc(size_t bytes, const char *what) {
    void *ptr = NULL;
    cudaError_t status = cudaMalloc(&ptr, bytes);
    if (status != cudaSuccess) {
        size_t free_bytes = 0, total_bytes = 0;
        (void)cudaGetLastError(); /* clear the error; the message below reports it */
        (void)cudaMemGetInfo(&free_bytes, &total_bytes); /* best effort: only for the message */
        ST_FAIL("CUDA: cudaMalloc of %zu bytes for %s: %s (%zu of %zu MiB free; HINT: a smaller "
                "--batch or image size)", bytes, what, cudaGetErrorString(status),
                free_bytes >> 20, total_bytes >> 20);
    }
    return ptr;
}

extern "C" void *cuda_alloc(st_backend *be, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    size_t size = bytes ? bytes : 1; /* a valid, freeable pointer even for empty tensors */
    void *ptr = cuda_device_malloc(size, "a tensor");
    CUDA_CHECK(cudaMemsetAsync(ptr, 0, size, ctx->stream));
    return ptr;
}

extern "C" void cuda_free(st_backend *be, void *ptr) {
    if (!ptr) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx_of(be)->stream)); /* no queued op still uses it */
    CUDA_CHECK(cudaFree(ptr));
}

extern "C" void cuda_upload(st_backend *be, void *dst, const void *host_src, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const char *src = (const char *)host_src;
    char *device_dst = (char *)dst;
    int half = 0;
    for (size_t offset = 0; offset < bytes; offset += ctx->staging_half_bytes, half ^= 1) {
        size_t len = bytes - offset < ctx->staging_half_bytes ? bytes - offset
                                                              : ctx->staging_half_bytes;
        /* the copy that last read this half must be done before it is overwritten */
        CUDA_CHECK(cudaEventSynchronize(ctx->staging_free[half]));
        memcpy(ctx->staging[half], src + offset, len);
        CUDA_CHECK(cudaMemcpyAsync(device_dst + offset, ctx->staging[half], len,
                                   cudaMemcpyHostToDevice, ctx->stream));
        CUDA_CHECK(cudaEventRecord(ctx->staging_free[half], ctx->stream));
    }
}

extern "C" void cuda_download(st_backend *be, void *host_dst, const void *src, size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const char *device_src = (const char *)src;
    char *dst = (char *)host_dst;
    size_t chunk = ctx->staging_half_bytes;
    size_t chunks = (bytes + chunk - 1) / chunk;
    for (size_t i = 0; i <= chunks; i++) {
        if (i < chunks) { /* enqueue chunk i into half i%2 (drained at iteration i-1) */
            size_t len = bytes - i * chunk < chunk ? bytes - i * chunk : chunk;
            int half = (int)(i & 1);
            CUDA_CHECK(cudaMemcpyAsync(ctx->staging[half], device_src + i * chunk, len,
                                       cudaMemcpyDeviceToHost, ctx->stream));
            CUDA_CHECK(cudaEventRecord(ctx->staging_free[half], ctx->stream));
        }
        if (i > 0) { /* drain chunk i-1 while chunk i is copied */
            size_t prev = i - 1;
            size_t len = bytes - prev * chunk < chunk ? bytes - prev * chunk : chunk;
            int half = (int)(prev & 1);
            CUDA_CHECK(cudaEventSynchronize(ctx->staging_free[half]));
            memcpy(dst + prev * chunk, ctx->staging[half], len);
        }
    }
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* also orders an empty download */
}

extern "C" void cuda_copy(st_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_ctx_of(be)->stream));
}

extern "C" void cuda_sync(st_backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx_of(be)->stream));
}

extern "C" void *cuda_host_alloc(st_backend *be, size_t bytes) {
    (void)be;
    void *ptr = NULL;
    size_t size = bytes ? bytes : 1;
    cudaError_t status = cudaMallocHost(&ptr, size);
    if (status != cudaSuccess)
        ST_FAIL("CUDA: cudaMallocHost of %zu bytes (page-locked batch memory): %s (HINT: a "
                "smaller --batch or data.prefetch)", size, cudaGetErrorString(status));
    memset(ptr, 0, size);
    return ptr;
}

extern "C" void cuda_host_free(st_backend *be, void *ptr) {
    if (!ptr) return;
    /* no queued copy may still read it */
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx_of(be)->copy_stream));
    CUDA_CHECK(cudaFreeHost(ptr));
}

/* The copy waits for the compute stream's work so far (it may still read dst), and the compute
 * stream's later work waits for the copy: two events, no host wait. */
extern "C" void cuda_upload_async(st_backend *be, void *dst, const void *pinned_src,
                                  size_t bytes) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (bytes == 0) return;
    CUDA_CHECK(cudaEventRecord(ctx->upload_start, ctx->stream));
    CUDA_CHECK(cudaStreamWaitEvent(ctx->copy_stream, ctx->upload_start, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, pinned_src, bytes, cudaMemcpyHostToDevice, ctx->copy_stream));
    CUDA_CHECK(cudaEventRecord(ctx->upload_done, ctx->copy_stream));
    CUDA_CHECK(cudaStreamWaitEvent(ctx->stream, ctx->upload_done, 0));
}

extern "C" void cuda_upload_fence(st_backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx_of(be)->copy_stream));
}

extern "C" void cuda_mem_info(st_backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

static __global__ void fill_kernel(float *x, float value, size_t n) {
    ST_GRID_STRIDE(i, n) x[i] = value;
}

static __global__ void scale_kernel(float *x, float alpha, size_t n) {
    ST_GRID_STRIDE(i, n) x[i] *= alpha;
}

static __global__ void axpy_kernel(float *y, float alpha, const float *x, size_t n) {
    ST_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

extern "C" void cuda_fill(st_backend *be, float *x, float value, size_t n) {
    if (n == 0) return;
    fill_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(x, value, n);
    CUDA_CHECK_LAUNCH("fill_kernel");
}

extern "C" void cuda_scale(st_backend *be, float *x, float alpha, size_t n) {
    if (n == 0) return;
    scale_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(x, alpha, n);
    CUDA_CHECK_LAUNCH("scale_kernel");
}

extern "C" void cuda_axpy(st_backend *be, float *y, float alpha, const float *x, size_t n) {
    if (n == 0) return;
    axpy_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(y, alpha, x, n);
    CUDA_CHECK_LAUNCH("axpy_kernel");
}

/* Pass 1: one double partial per block; pass 2: one block adds the partials in a fixed order. */
static __global__ void sum_squares_partial(const float *x, size_t n, double *partial) {
    double acc = 0.0;
    ST_GRID_STRIDE(i, n) acc += (double)x[i] * (double)x[i];
    acc = st_block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

static __global__ void sum_partials(const double *partial, int count, double *total) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = st_block_sum(acc);
    if (threadIdx.x == 0) *total = acc;
}

extern "C" double cuda_sum_squares(st_backend *be, const float *x, size_t n) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    unsigned blocks = st_grid_for(n);
    double *partial = (double *)cuda_scratch(be, (blocks + 1) * sizeof(double));
    double *total = partial + blocks;
    double *host = (double *)cuda_host_result(be, sizeof(double));
    if (n == 0) return 0.0;
    sum_squares_partial<<<blocks, ST_BLOCK, 0, ctx->stream>>>(x, n, partial);
    CUDA_CHECK_LAUNCH("sum_squares_partial");
    sum_partials<<<1, ST_BLOCK, 0, ctx->stream>>>(partial, (int)blocks, total);
    CUDA_CHECK_LAUNCH("sum_partials");
    CUDA_CHECK(cudaMemcpyAsync(host, total, sizeof(double), cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    return *host;
}

/* Any thread seeing a NaN or an infinity stores 1; concurrent stores of one value are benign. */
static __global__ void find_non_finite(const float *x, size_t n, int *found) {
    ST_GRID_STRIDE(i, n) {
        if (!isfinite(x[i])) *found = 1;
    }
}

extern "C" int cuda_all_finite(st_backend *be, const float *x, size_t n) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int *found = (int *)cuda_scratch(be, sizeof(int));
    int *host = (int *)cuda_host_result(be, sizeof(int));
    if (n == 0) return 1;
    CUDA_CHECK(cudaMemsetAsync(found, 0, sizeof(int), ctx->stream));
    find_non_finite<<<st_grid_for(n), ST_BLOCK, 0, ctx->stream>>>(x, n, found);
    CUDA_CHECK_LAUNCH("find_non_finite");
    CUDA_CHECK(cudaMemcpyAsync(host, found, sizeof(int), cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    return *host == 0;
}
