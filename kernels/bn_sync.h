/*
 * bn_sync.h: synchronised batch norm (`sync_bn: true` in a data-parallel run, docs/scaling.md):
 * the host-side combination of the per-channel sums of a training batch norm across the ranks
 * of kernels/comm.h, so every rank normalises with the statistics of the GLOBAL batch (as
 * PyTorch's SyncBatchNorm). Called by both backends' bn ops when st_bn_desc.sync is set
 * (kernels/cpu/batchnorm.c on its host sums, kernels/cuda/batchnorm.cu on a host copy of its
 * device sums); every rank calls it for the same batch norms in the same order (MPI's rule),
 * which holds because every rank runs the same model.
 *
 * Forward: each rank has, per channel, its rows n_r and the sums S1 = sum d, S2 = sum d^2 of
 * d = x - p_r about its own pivot p_r (its first row: kernels/math/batchnorm.h). The ranks
 * all-gather (n_r, p_r, S1, S2); every rank shifts each rank's sums to rank 0's pivot P exactly
 * in double (x - P = d + delta, delta = p_r - P: S1' = S1 + n_r delta,
 * S2' = S2 + 2 delta S1 + n_r delta^2) and adds them in rank order, so all ranks compute the
 * same bits. One process with the same global batch sums about the same pivot (its first row
 * is rank 0's first row), so only the summation order differs from it.
 * Backward: the sums of g and g * xhat, and the rows, are all-reduced (double).
 * Per batch norm and step: forward all-gathers 8 * (1 + 3C) bytes per rank, backward
 * all-reduces 8 * (1 + 2C) bytes.
 */
#ifndef ST_BN_SYNC_H
#define ST_BN_SYNC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Forward. In: this rank's rows, pivot (C floats) and sums of d = x - pivot for channel c at
 * sum_d[c * stride], sum_d2[c * stride]. Out (overwritten): the global batch's rows, rank 0's
 * pivot and the global sums about it. Nothing changes in a world of one. */
void st_bn_sync_moments(int c, double *rows, float *pivot, double *sum_d, double *sum_d2,
                        size_t stride);

/* Backward: n sums and the rows, each summed over the ranks (in place). */
void st_bn_sync_grad_sums(double *sums, size_t n, double *rows);

#ifdef __cplusplus
}
#endif
#endif
