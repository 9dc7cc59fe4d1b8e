/*
 * triplet.cu: batch-hard / batch-all triplet loss on a PK batch with its gradient, on the GPU,
 * with the formulas of kernels/math/triplet.h and the reductions of kernels/cpu/triplet.c
 * (docs/algorithms.md B): same valid/active rules, same means, ties to the lower index.
 *
 *   emb (N, D) embeddings; labels int32 (N); dist (N, N) left holding the pairwise distances;
 *   demb (N, D) overwritten with dL/demb; stats (device) overwritten; nothing is read back.
 *
 * Steps, all on the stream:
 *   1. distances for the upper triangle (st_triplet_pair_dist: direct differences in a fixed
 *      order, so identical rows tie exactly whatever the launch shape), mirrored;
 *   2. per-anchor partial statistics (one thread per anchor: mining or the (p, n) loops);
 *   3. one thread adds the partials in anchor order (double) -> stats and 1/valid or 1/active;
 *   4. coeff (N, N) = dL/dD(a, j), the slope of every term on each distance, summed per anchor
 *      in the CPU's order;
 *   5. demb gathered per element: row i adds, anchor by anchor, (coeff/D)(f_i - f_j) of its own
 *      pairs and subtracts (coeff/D)(f_a - f_i) where it is some anchor's partner. No atomics,
 *      deterministic; the CPU scatters the same terms.
 */
#include "../math/triplet.h"
#include "device.cuh"

namespace {
struct anchor_partial {
    double loss, pos_sum, neg_sum;
    long long triplets, active, pos_pairs, neg_pairs;
    int valid; /* batch hard: the anchor has a positive and a negative */
};
} // namespace

/* Thread (i, j), j >= i, computes D(i, j) and writes both (i, j) and (j, i). */
static __global__ void pairwise_distances(const float *emb, int n, int d, float eps, float *dist) {
    ST_GRID_STRIDE(idx, (size_t)n * n) {
        int i = (int)(idx / n), j = (int)(idx % n);
        if (j < i) continue;
        float dij = st_triplet_pair_dist(emb + (size_t)i * d, emb + (size_t)j * d, d, eps);
        dist[idx] = dij;
        dist[(size_t)j * n + i] = dij;
    }
}

static __global__ void batch_hard_partials(const st_triplet_desc desc, const int32_t *labels,
                                           const float *dist, int *pos, int *neg,
                                           anchor_partial *part) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    int n = desc.n;
    if (a >= n) return;
    anchor_partial ap = {};
    const float *row = dist + (size_t)a * n;
    if (st_triplet_mine_row(row, labels, n, a, &pos[a], &neg[a])) {
        float z = row[pos[a]] - row[neg[a]];
        ap.valid = 1;
        ap.active = st_triplet_active(z, desc.margin, desc.soft_margin);
        ap.loss = st_triplet_term(z, desc.margin, desc.soft_margin);
        ap.pos_sum = row[pos[a]];
        ap.neg_sum = row[neg[a]];
    } else {
        pos[a] = -1;
    }
    part[a] = ap;
}

static __global__ void batch_all_partials(const st_triplet_desc desc, const int32_t *labels,
                                          const float *dist, anchor_partial *part) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    int n = desc.n;
    if (a >= n) return;
    anchor_partial ap = {};
    const float *row = dist + (size_t)a * n;
    for (int j = 0; j < n; j++) {
        if (j == a) continue;
        if (labels[j] == labels[a]) {
            ap.pos_sum += row[j];
            ap.pos_pairs++;
        } else {
            ap.neg_sum += row[j];
            ap.neg_pairs++;
        }
    }
    for (int p = 0; p < n; p++) {
        if (p == a || labels[p] != labels[a]) continue;
        for (int q = 0; q < n; q++) {
            if (labels[q] == labels[a]) continue;
            float z = row[p] - row[q];
            ap.triplets++;
            if (!st_triplet_active(z, desc.margin, desc.soft_margin)) continue;
            ap.active++;
            ap.loss += st_triplet_term(z, desc.margin, desc.soft_margin);
        }
    }
    part[a] = ap;
}

/* One thread: totals in anchor order, the stats, and the gradient's 1/count (0: no gradient). */
static __global__ void finish_stats(int n, int batch_all, const anchor_partial *part,
                                    st_triplet_stats *stats, float *inv_count) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    anchor_partial t = {};
    for (int a = 0; a < n; a++) {
        t.loss += part[a].loss;
        t.pos_sum += part[a].pos_sum;
        t.neg_sum += part[a].neg_sum;
        t.triplets += part[a].triplets;
        t.active += part[a].active;
        t.pos_pairs += part[a].pos_pairs;
        t.neg_pairs += part[a].neg_pairs;
        t.valid += part[a].valid;
    }
    st_triplet_stats s = {0.0f, 0.0f, 0.0f, 0.0f};
    *inv_count = 0.0f;
    if (!batch_all && t.valid > 0) {
        *inv_count = 1.0f / (float)t.valid;
        s.loss = (float)(t.loss / t.valid);
        s.active_fraction = (float)t.active / (float)t.valid;
        s.mean_pos = (float)(t.pos_sum / t.valid);
        s.mean_neg = (float)(t.neg_sum / t.valid);
    }
    if (batch_all) {
        if (t.active > 0) {
            *inv_count = 1.0f / (float)t.active;
            s.loss = (float)(t.loss / (double)t.active);
        }
        if (t.triplets > 0) s.active_fraction = (float)((double)t.active / (double)t.triplets);
        if (t.pos_pairs > 0) s.mean_pos = (float)(t.pos_sum / (double)t.pos_pairs);
        if (t.neg_pairs > 0) s.mean_neg = (float)(t.neg_sum / (double)t.neg_pairs);
    }
    *stats = s;
}

/* coeff[a][j] = dL/dD(a, j) over anchor a's terms, accumulated in the CPU's (p, q) order. */
static __global__ void term_coefficients(const st_triplet_desc desc, const int32_t *labels,
                                         const float *dist, const int *pos, const int *neg,
                                         const float *inv_count, float *coeff) {
    int n = desc.n;
    ST_GRID_STRIDE(idx, (size_t)n * n) {
        int a = (int)(idx / n), j = (int)(idx % n);
        const float *row = dist + (size_t)a * n;
        float inv = *inv_count;
        float c = 0.0f;
        if (!desc.batch_all) {
            if (pos[a] >= 0 && (j == pos[a] || j == neg[a])) {
                float g = st_triplet_term_slope(row[pos[a]] - row[neg[a]], desc.margin,
                                                desc.soft_margin) * inv;
                c = j == pos[a] ? g : -g;
            }
        } else if (j != a && inv != 0.0f) {
            if (labels[j] == labels[a]) { /* j as the positive: + slope for every negative q */
                for (int q = 0; q < n; q++)
                    if (labels[q] != labels[a])
                        c += st_triplet_term_slope(row[j] - row[q], desc.margin,
                                                   desc.soft_margin) * inv;
            } else { /* j as the negative: - slope for every positive p != a */
                for (int p = 0; p < n; p++)
                    if (p != a && labels[p] == labels[a])
                        c -= st_triplet_term_slope(row[p] - row[j], desc.margin,
                                                   desc.soft_margin) * inv;
            }
        }
        coeff[idx] = c;
    }
}

static __global__ void gather_gradient(int n, int d, const float *emb, const float *dist,
                                       const float *coeff, float *demb) {
    ST_GRID_STRIDE(idx, (size_t)n * d) {
        int i = (int)(idx / d), k = (int)(idx % d);
        float fi = emb[idx];
        float g = 0.0f;
        for (int a = 0; a < n; a++) {
            if (a == i) { /* i as the anchor: + (c / D)(f_i - f_j) for each of its pairs */
                for (int j = 0; j < n; j++) {
                    float c = coeff[(size_t)i * n + j];
                    if (c != 0.0f)
                        g += st_triplet_pair_coeff(c, dist[(size_t)i * n + j]) *
                             (fi - emb[(size_t)j * d + k]);
                }
            } else { /* i as anchor a's partner: - (c / D)(f_a - f_i) */
                float c = coeff[(size_t)a * n + i];
                if (c != 0.0f)
                    g -= st_triplet_pair_coeff(c, dist[(size_t)a * n + i]) *
                         (emb[(size_t)a * d + k] - fi);
            }
        }
        demb[idx] = g;
    }
}

/* Scratch: 16-byte aligned pieces carved in order. */
static size_t align16(size_t bytes) { return (bytes + 15) & ~(size_t)15; }

extern "C" void cuda_triplet_loss(st_backend *be, const st_triplet_desc *d, const float *emb,
                                  const int32_t *labels, float *dist, float *demb,
                                  st_triplet_stats *stats) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(d->n > 0 && d->d > 0, "triplet_loss: bad shape (%d, %d)", d->n, d->d);
    ST_CHECK(d->eps > 0.0f, "triplet_loss: eps must be > 0 for a finite gradient at D = 0");
    const int n = d->n;
    size_t sizes[4] = {align16((size_t)n * n * sizeof(float)),        /* coeff (N, N) */
                       align16(2 * (size_t)n * sizeof(int)),          /* pos, neg (N) */
                       align16(n * sizeof(anchor_partial)),           /* partials (N) */
                       align16(sizeof(float))};                       /* inv_count */
    size_t total = 0;
    for (int i = 0; i < 4; i++) total += sizes[i];
    char *base = (char *)cuda_scratch(be, total);
    float *coeff = (float *)base;
    int *pos = (int *)(base += sizes[0]);
    int *neg = pos + n;
    anchor_partial *part = (anchor_partial *)(base += sizes[1]);
    float *inv_count = (float *)(base += sizes[2]);

    cudaStream_t stream = ctx->stream;
    unsigned anchor_blocks = (unsigned)((n + ST_BLOCK - 1) / ST_BLOCK);
    size_t pairs = (size_t)n * n;
    pairwise_distances<<<st_grid_for(pairs), ST_BLOCK, 0, stream>>>(emb, n, d->d, d->eps, dist);
    CUDA_CHECK_LAUNCH("pairwise_distances");
    if (d->batch_all) {
        batch_all_partials<<<anchor_blocks, ST_BLOCK, 0, stream>>>(*d, labels, dist, part);
        CUDA_CHECK_LAUNCH("batch_all_partials");
    } else {
        batch_hard_partials<<<anchor_blocks, ST_BLOCK, 0, stream>>>(*d, labels, dist, pos, neg,
                                                                    part);
        CUDA_CHECK_LAUNCH("batch_hard_partials");
    }
    finish_stats<<<1, 32, 0, stream>>>(n, d->batch_all, part, stats, inv_count);
    CUDA_CHECK_LAUNCH("finish_stats");
    term_coefficients<<<st_grid_for(pairs), ST_BLOCK, 0, stream>>>(*d, labels, dist, pos, neg,
                                                                   inv_count, coeff);
    CUDA_CHECK_LAUNCH("term_coefficients");
    size_t elems = (size_t)n * d->d;
    gather_gradient<<<st_grid_for(elems), ST_BLOCK, 0, stream>>>(n, d->d, emb, dist, coeff, demb);
    CUDA_CHECK_LAUNCH("gather_gradient");
}
