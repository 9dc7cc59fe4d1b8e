/*
 * triplet.c: CPU triplet loss on a PK batch with its gradient (st_backend triplet_loss).
 *
 *   emb (N, D) row-major embeddings; labels int32 (N); dist (N, N) workspace, left holding the
 *   pairwise distances; demb (N, D) overwritten with dL/demb; stats ("device", host memory on
 *   the cpu backend) overwritten.
 *
 * Distances: st_triplet_pair_dist of kernels/math/triplet.h for the upper triangle, mirrored
 * (direct differences in a fixed order, not a GEMM: see there why), rows spread over threads;
 * each entry is computed once by one thread, so the matrix does not depend on the thread count.
 *
 * Reductions (docs/algorithms.md B.1, B.5):
 *   batch hard: L = mean over VALID anchors (those with a positive and a negative; all of them
 *               in a PK batch with K >= 2, P >= 2) of h(D(a, p*) - D(a, n*)), Hermans' mean over
 *               the P*K anchors. active_fraction = active anchors / valid anchors; mean_pos /
 *               mean_neg = mean hardest-positive / hardest-negative distance.
 *   batch all:  L = mean over ACTIVE triplets (h > 0; every triplet with the soft margin) of
 *               h(D(a, p) - D(a, n)) over all a, p != a same label, n other label; 0 when no
 *               triplet is active (pytorch-metric-learning's AvgNonZeroReducer). active_fraction
 *               = active / valid triplets; mean_pos / mean_neg over all positive / negative
 *               ordered pairs.
 * Ties in mining go to the lower index. Runs sequentially after the GEMM (N is a batch, ~100):
 * the scatter of gradients into shared rows then needs no atomics and is deterministic.
 */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../math/triplet.h"
#include "cpu_ops.h"

/* dist <- safe distances of all pairs of rows of emb. */
static void pairwise_distances(const st_triplet_desc *d, const float *emb, float *dist) {
    const int n = d->n, dim = d->d;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        const float *xi = emb + (size_t)i * dim;
        for (int j = i; j < n; j++) {
            float dij = st_triplet_pair_dist(xi, emb + (size_t)j * dim, dim, d->eps);
            dist[(size_t)i * n + j] = dij;
            dist[(size_t)j * n + i] = dij;
        }
    }
}

static void batch_hard(const st_triplet_desc *d, const float *emb, const int32_t *labels,
                       const float *dist, float *demb, st_triplet_stats *stats) {
    const int n = d->n, dim = d->d;
    int *pos = ST_MALLOC(sizeof(int) * 2 * (size_t)n), *neg = pos + n;
    int valid = 0, active = 0;
    double loss_sum = 0, pos_sum = 0, neg_sum = 0;
    for (int a = 0; a < n; a++) {
        if (!st_triplet_mine_row(dist + (size_t)a * n, labels, n, a, &pos[a], &neg[a])) {
            pos[a] = -1;
            continue;
        }
        float d_ap = dist[(size_t)a * n + pos[a]], d_an = dist[(size_t)a * n + neg[a]];
        float z = d_ap - d_an;
        valid++;
        active += st_triplet_active(z, d->margin, d->soft_margin);
        loss_sum += st_triplet_term(z, d->margin, d->soft_margin);
        pos_sum += d_ap;
        neg_sum += d_an;
    }
    if (valid > 0) {
        const float inv_valid = 1.0f / (float)valid;
        for (int a = 0; a < n; a++) {
            if (pos[a] < 0) continue;
            float d_ap = dist[(size_t)a * n + pos[a]], d_an = dist[(size_t)a * n + neg[a]];
            float g = st_triplet_term_slope(d_ap - d_an, d->margin, d->soft_margin) * inv_valid;
            if (g == 0.0f) continue;
            const float *fa = emb + (size_t)a * dim;
            float *ga = demb + (size_t)a * dim;
            st_triplet_pair_grad(g, d_ap, fa, emb + (size_t)pos[a] * dim, ga,
                                 demb + (size_t)pos[a] * dim, dim);
            st_triplet_pair_grad(-g, d_an, fa, emb + (size_t)neg[a] * dim, ga,
                                 demb + (size_t)neg[a] * dim, dim);
        }
        stats->loss = (float)(loss_sum / valid);
        stats->active_fraction = (float)active / (float)valid;
        stats->mean_pos = (float)(pos_sum / valid);
        stats->mean_neg = (float)(neg_sum / valid);
    }
    free(pos);
}

static void batch_all(const st_triplet_desc *d, const float *emb, const int32_t *labels,
                      const float *dist, float *demb, st_triplet_stats *stats) {
    const int n = d->n, dim = d->d;
    long triplets = 0, active = 0, pos_pairs = 0, neg_pairs = 0;
    double loss_sum = 0, pos_sum = 0, neg_sum = 0;
    for (int a = 0; a < n; a++) {
        const float *row = dist + (size_t)a * n;
        for (int j = 0; j < n; j++) {
            if (j == a) continue;
            if (labels[j] == labels[a]) {
                pos_sum += row[j];
                pos_pairs++;
            } else {
                neg_sum += row[j];
                neg_pairs++;
            }
        }
        for (int p = 0; p < n; p++) {
            if (p == a || labels[p] != labels[a]) continue;
            for (int q = 0; q < n; q++) {
                if (labels[q] == labels[a]) continue;
                float z = row[p] - row[q];
                triplets++;
                if (!st_triplet_active(z, d->margin, d->soft_margin)) continue;
                active++;
                loss_sum += st_triplet_term(z, d->margin, d->soft_margin);
            }
        }
    }
    if (active > 0) {
        /* Per anchor, sum the slopes on each D(a, j) first, then scatter once per pair. */
        float *coeff = ST_MALLOC(sizeof(float) * (size_t)n); /* (N) dL/dD(a, j) */
        const float inv_active = 1.0f / (float)active;
        for (int a = 0; a < n; a++) {
            const float *row = dist + (size_t)a * n;
            memset(coeff, 0, sizeof(float) * (size_t)n);
            for (int p = 0; p < n; p++) {
                if (p == a || labels[p] != labels[a]) continue;
                for (int q = 0; q < n; q++) {
                    if (labels[q] == labels[a]) continue;
                    float g = st_triplet_term_slope(row[p] - row[q], d->margin, d->soft_margin) *
                              inv_active;
                    coeff[p] += g;
                    coeff[q] -= g;
                }
            }
            for (int j = 0; j < n; j++)
                if (coeff[j] != 0.0f)
                    st_triplet_pair_grad(coeff[j], row[j], emb + (size_t)a * dim,
                                         emb + (size_t)j * dim, demb + (size_t)a * dim,
                                         demb + (size_t)j * dim, dim);
        }
        free(coeff);
        stats->loss = (float)(loss_sum / (double)active);
    }
    if (triplets > 0) stats->active_fraction = (float)((double)active / (double)triplets);
    if (pos_pairs > 0) stats->mean_pos = (float)(pos_sum / (double)pos_pairs);
    if (neg_pairs > 0) stats->mean_neg = (float)(neg_sum / (double)neg_pairs);
}

void cpu_triplet_loss(st_backend *be, const st_triplet_desc *d, const float *emb,
                      const int32_t *labels, float *dist, float *demb, st_triplet_stats *stats) {
    (void)be;
    ST_CHECK(d->n > 0 && d->d > 0, "triplet_loss: bad shape (%d, %d)", d->n, d->d);
    ST_CHECK(d->eps > 0.0f, "triplet_loss: eps must be > 0 for a finite gradient at D = 0");
    pairwise_distances(d, emb, dist);
    memset(demb, 0, sizeof(float) * (size_t)d->n * (size_t)d->d);
    memset(stats, 0, sizeof *stats);
    if (d->batch_all)
        batch_all(d, emb, labels, dist, demb, stats);
    else
        batch_hard(d, emb, labels, dist, demb, stats);
}
