/*
 * topk.cu: merge a tile of scores into running per-query top-k lists on the GPU
 * (backend.h topk_merge), with the one ordering of kernels/math/topk.h (real before empty, NaN
 * never enters, better score first, ties to the lower gallery index), so the lists equal the
 * CPU's (kernels/cpu/topk.c) exactly, tie order included.
 *
 *   scores      (Q, tile)  row-major; column j is gallery row base + j
 *   best_scores (Q, k)     sorted best first, updated in place
 *   best_index  (Q, k)     int64 gallery rows; -1 marks an empty slot (score = worst)
 *
 * One block per query row, everything in shared memory: the first k slots of a buffer of `cap`
 * (score, index) pairs hold the current list; the block reads the tile in coalesced chunks of
 * blockDim scores, and each thread whose score may beat the threshold (the k-th entry) appends
 * it. When a chunk would overflow the buffer, the buffer is bitonic-sorted with the total order
 * (empty slots padding it), cut back to k, and the threshold raised; the chunk is then re-tested.
 * cap = next power of two >= k + blockDim, so one chunk always fits after a cut. Because the
 * order is total on distinct indices, the result does not depend on which thread appended first.
 * k <= ST_TOPK_MAX_K (96 KiB of shared memory per block at the maximum).
 */
#include "../math/topk.h"
#include "device.cuh"

#define ST_TOPK_MAX_K 4096
#define ST_TOPK_THREADS 256

/* Bitonic sort of (score, index)[0..cap) best first; cap a power of two. Call from all threads. */
static __device__ void sort_pairs(float *score, int64_t *index, int cap, int larger) {
    for (int size = 2; size <= cap; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int i = threadIdx.x; i < cap; i += blockDim.x) {
                int partner = i ^ stride;
                if (partner <= i) continue;
                int ascending = (i & size) == 0; /* this half-segment runs best first */
                int partner_first = st_topk_before(score[partner], index[partner], score[i],
                                                   index[i], larger);
                int i_first = st_topk_before(score[i], index[i], score[partner], index[partner],
                                             larger);
                if (ascending ? partner_first : i_first) {
                    float s = score[i];
                    int64_t g = index[i];
                    score[i] = score[partner];
                    index[i] = index[partner];
                    score[partner] = s;
                    index[partner] = g;
                }
            }
        }
    }
    __syncthreads();
}

static __global__ void topk_merge_kernel(int tile, int64_t base, int k, int larger, int cap,
                                         const float *scores, float *best_scores,
                                         int64_t *best_index) {
    extern __shared__ __align__(8) unsigned char shared_bytes[];
    int64_t *index = (int64_t *)shared_bytes; /* (cap) */
    float *score = (float *)(index + cap);    /* (cap) */
    __shared__ int fill;
    __shared__ float threshold_score;
    __shared__ int64_t threshold_index;

    const float *row = scores + (size_t)blockIdx.x * tile;
    float *list_score = best_scores + (size_t)blockIdx.x * k;
    int64_t *list_index = best_index + (size_t)blockIdx.x * k;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        score[i] = list_score[i];
        index[i] = list_index[i];
    }
    if (threadIdx.x == 0) {
        fill = k;
        threshold_score = list_score[k - 1];
        threshold_index = list_index[k - 1];
    }
    __syncthreads();

    int entered = 0; /* uniform: did any candidate enter the buffer during this tile? */
    for (int start = 0; start < tile; start += blockDim.x) {
        int j = start + threadIdx.x;
        float s = j < tile ? row[j] : 0.0f;
        int64_t g = base + j;
        int wants = j < tile && st_topk_may_enter(s, g, threshold_score, threshold_index, larger);
        /* read before the barrier: after it, faster threads may already be appending */
        int filled = fill;
        int count = __syncthreads_count(wants);
        entered |= count > 0;
        if (filled + count > cap) { /* uniform: every thread has the same filled and count */
            for (int i = filled + threadIdx.x; i < cap; i += blockDim.x) {
                score[i] = st_topk_worst_score(larger);
                index[i] = -1;
            }
            sort_pairs(score, index, cap, larger);
            if (threadIdx.x == 0) {
                fill = k;
                threshold_score = score[k - 1];
                threshold_index = index[k - 1];
            }
            __syncthreads();
            wants = j < tile && st_topk_may_enter(s, g, threshold_score, threshold_index, larger);
        }
        if (wants) {
            int slot = atomicAdd(&fill, 1);
            score[slot] = s;
            index[slot] = g;
        }
        __syncthreads();
    }

    if (!entered) return; /* the list is unchanged */
    if (fill > k) { /* candidates since the last cut (the first k slots are sorted otherwise) */
        for (int i = fill + threadIdx.x; i < cap; i += blockDim.x) {
            score[i] = st_topk_worst_score(larger);
            index[i] = -1;
        }
        sort_pairs(score, index, cap, larger);
    }
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        list_score[i] = index[i] >= 0 ? score[i] : st_topk_worst_score(larger);
        list_index[i] = index[i];
    }
}

extern "C" void cuda_topk_merge(st_backend *be, int q, int tile, int64_t base, int k,
                                int larger_is_better, const float *scores, float *best_scores,
                                int64_t *best_index) {
    ST_CHECK(q >= 0 && tile >= 0 && k >= 1 && base >= 0,
             "topk_merge: bad sizes q=%d tile=%d k=%d base=%lld", q, tile, k, (long long)base);
    ST_CHECK(k <= ST_TOPK_MAX_K, "topk_merge: k=%d exceeds the CUDA limit %d (HINT: use a "
             "smaller k or --device cpu)", k, ST_TOPK_MAX_K);
    if (q == 0 || tile == 0) return;
    int cap = 1;
    while (cap < k + ST_TOPK_THREADS) cap <<= 1;
    size_t shared = (size_t)cap * (sizeof(int64_t) + sizeof(float));
    /* above the default 48 KiB per block (with room for the static shared variables): opt in;
     * sm_80 allows 163 KiB, sm_90 227 KiB */
    if (shared > 47 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(topk_merge_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared));
    topk_merge_kernel<<<q, ST_TOPK_THREADS, shared, cuda_ctx_of(be)->stream>>>(
        tile, base, k, larger_is_better, cap, scores, best_scores, best_index);
    CUDA_CHECK_LAUNCH("topk_merge_kernel");
}
