/*
 * device.cuh: launch arithmetic and block-level reductions shared by the CUDA op files
 * (the .cu files of kernels/cuda). Device code only; nothing here knows about an op's semantics.
 *
 * Conventions: elementwise kernels use grid-stride loops over size_t indices, launched with
 * ST_BLOCK threads and at most ST_MAX_BLOCKS blocks; per-row kernels use one block per row.
 * Reductions accumulate in double and combine in a fixed order, so results are deterministic
 * run to run (no atomics on floating-point values).
 */
#ifndef ST_CUDA_DEVICE_CUH
#define ST_CUDA_DEVICE_CUH

#include <stddef.h>

#include "cuda_ops.h"

#define ST_BLOCK 256
#define ST_MAX_BLOCKS 4096

static inline unsigned st_grid_for(size_t n) {
    size_t blocks = (n + ST_BLOCK - 1) / ST_BLOCK;
    if (blocks < 1) blocks = 1;
    return (unsigned)(blocks < ST_MAX_BLOCKS ? blocks : ST_MAX_BLOCKS);
}

#define ST_GRID_STRIDE(i, n)                                                           \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);            \
         i += (size_t)gridDim.x * blockDim.x)

/* The coordinates of flat index i of an NHWC tensor (N, h, w, c). */
struct st_nhwc_at {
    size_t n;
    int y, x, c;
};

static __device__ __forceinline__ st_nhwc_at st_nhwc_of(size_t i, int h, int w, int c) {
    st_nhwc_at at;
    at.c = (int)(i % (size_t)c);
    size_t pixel = i / (size_t)c;
    at.x = (int)(pixel % (size_t)w);
    at.y = (int)((pixel / (size_t)w) % (size_t)h);
    at.n = pixel / ((size_t)w * h);
    return at;
}

static __device__ __forceinline__ double st_warp_sum(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
 * Contains __syncthreads: call from all threads of the block. */
static __device__ double st_block_sum(double v) {
    __shared__ double warp_totals[32];
    __shared__ double total;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = st_warp_sum(v);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double w = lane < (int)(blockDim.x >> 5) ? warp_totals[lane] : 0.0;
        w = st_warp_sum(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    double result = total;
    __syncthreads(); /* the shared slots may be reused by the next call */
    return result;
}

static __device__ float st_block_max(float v) {
    __shared__ float warp_max[32];
    __shared__ float result_slot;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < (int)(blockDim.x >> 5) ? warp_max[lane] : -INFINITY;
        for (int offset = 16; offset > 0; offset >>= 1)
            w = fmaxf(w, __shfl_down_sync(0xffffffffu, w, offset));
        if (lane == 0) result_slot = w;
    }
    __syncthreads();
    float result = result_slot;
    __syncthreads();
    return result;
}

/*
 * Per-column sums of two per-element terms of a row-major (rows, c) layout, in two deterministic
 * passes: column_partial_sums writes partial[chunk * c + col] for row chunks, column_finish adds
 * the chunks in order. Terms is a functor: __device__ double2 operator()(long row, int col).
 * Block (32, 8): 32 adjacent columns (coalesced reads), 8 row lanes.
 */
#define ST_COL_STRIP 32
#define ST_COL_LANES 8

template <class Terms>
__global__ void column_partial_sums(long rows, int c, long rows_per_chunk, Terms terms,
                                    double2 *partial) {
    __shared__ double2 lane_sums[ST_COL_LANES][ST_COL_STRIP];
    int col = blockIdx.x * ST_COL_STRIP + threadIdx.x;
    long r0 = (long)blockIdx.y * rows_per_chunk;
    long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    double2 acc = make_double2(0.0, 0.0);
    if (col < c) {
        for (long r = r0 + threadIdx.y; r < r1; r += ST_COL_LANES) {
            double2 t = terms(r, col);
            acc.x += t.x;
            acc.y += t.y;
        }
    }
    lane_sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < c) {
        for (int lane = 1; lane < ST_COL_LANES; lane++) {
            acc.x += lane_sums[lane][threadIdx.x].x;
            acc.y += lane_sums[lane][threadIdx.x].y;
        }
        partial[(size_t)blockIdx.y * c + col] = acc;
    }
}

static __global__ void column_finish(int c, int chunks, const double2 *partial, double2 *sums) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    double2 acc = make_double2(0.0, 0.0);
    for (int chunk = 0; chunk < chunks; chunk++) {
        acc.x += partial[(size_t)chunk * c + col].x;
        acc.y += partial[(size_t)chunk * c + col].y;
    }
    sums[col] = acc;
}

/* Row chunks for column_partial_sums: enough blocks to fill a large GPU, chunks of >= 256 rows. */
static inline int st_column_chunks(long rows) {
    long chunks = rows / 256;
    if (chunks < 1) chunks = 1;
    if (chunks > 256) chunks = 256;
    return (int)chunks;
}

/* Scratch doubles (as double2) that st_column_sums needs for (rows, c). */
static inline size_t st_column_scratch_count(long rows, int c) {
    return (size_t)(st_column_chunks(rows) + 1) * (size_t)c;
}

/* Enqueue both passes; sums (c) and the partials live in `scratch` (st_column_scratch_count
 * double2 values): sums at scratch[0 .. c). Returns sums. */
template <class Terms>
static double2 *st_column_sums(cudaStream_t stream, long rows, int c, Terms terms,
                               double2 *scratch) {
    int chunks = st_column_chunks(rows);
    long rows_per_chunk = (rows + chunks - 1) / chunks;
    double2 *sums = scratch, *partial = scratch + c;
    dim3 grid((unsigned)((c + ST_COL_STRIP - 1) / ST_COL_STRIP), (unsigned)chunks);
    dim3 block(ST_COL_STRIP, ST_COL_LANES);
    column_partial_sums<Terms><<<grid, block, 0, stream>>>(rows, c, rows_per_chunk, terms,
                                                          partial);
    CUDA_CHECK_LAUNCH("column_partial_sums");
    column_finish<<<(c + ST_BLOCK - 1) / ST_BLOCK, ST_BLOCK, 0, stream>>>(c, chunks, partial,
                                                                          sums);
    CUDA_CHECK_LAUNCH("column_finish");
    return sums;
}

#endif
