/*
 * bn_sync.c: the cross-rank combination of synchronised batch norm (contract: bn_sync.h).
 * Callers: kernels/cpu/batchnorm.c, kernels/cuda/batchnorm.cu.
 */
#include "bn_sync.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"

/* One rank's block of the all-gather, as doubles: rows, then pivot, sum_d, sum_d2 (C each). */
static size_t block_doubles(int c) { return 1 + 3 * (size_t)c; }

void st_bn_sync_moments(int c, double *rows, float *pivot, double *sum_d, double *sum_d2,
                        size_t stride) {
    int ranks = st_comm_size();
    if (ranks == 1) return;
    size_t per_rank = block_doubles(c);
    double *mine = ST_MALLOC(per_rank * sizeof(double));
    double *all = ST_MALLOC((size_t)ranks * per_rank * sizeof(double));
    mine[0] = *rows;
    for (int ch = 0; ch < c; ch++) {
        mine[1 + ch] = pivot[ch];
        mine[1 + c + ch] = sum_d[ch * stride];
        mine[1 + 2 * (size_t)c + ch] = sum_d2[ch * stride];
    }
    st_comm_allgather(mine, per_rank * sizeof(double), all);
    double total_rows = 0.0;
    for (int r = 0; r < ranks; r++) total_rows += all[r * per_rank];
    for (int ch = 0; ch < c; ch++) {
        double common = all[1 + ch]; /* rank 0's pivot */
        double s1 = 0.0, s2 = 0.0;
        for (int r = 0; r < ranks; r++) {
            const double *b = all + r * per_rank;
            double n = b[0], r1 = b[1 + c + ch], r2 = b[1 + 2 * (size_t)c + ch];
            /* the difference of two floats is exact in double while their exponents differ by
             * at most 28, else rounded to 1e-16 relative: either way far below the float
             * rounding of the sums themselves */
            double delta = b[1 + ch] - common;
            s1 += r1 + n * delta;
            s2 += r2 + 2.0 * delta * r1 + n * delta * delta;
        }
        pivot[ch] = (float)common; /* a float to begin with: exact */
        sum_d[ch * stride] = s1;
        sum_d2[ch * stride] = s2;
    }
    *rows = total_rows;
    free(all);
    free(mine);
}

void st_bn_sync_grad_sums(double *sums, size_t n, double *rows) {
    if (st_comm_size() == 1) return;
    double *buf = ST_MALLOC((n + 1) * sizeof(double));
    memcpy(buf, sums, n * sizeof(double));
    buf[n] = *rows;
    st_comm_allreduce_sum_f64(buf, n + 1);
    memcpy(sums, buf, n * sizeof(double));
    *rows = buf[n];
    free(buf);
}
