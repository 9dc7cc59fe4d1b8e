/*
 * comm.h: the communicator of a multi-process run (data-parallel training, sharded embed and
 * top-k): rank and size, and the collectives the layers above need, over the ranks that
 * `mpirun -np N` or `srun` started.
 *
 * One world per process. st_comm_init() joins it: when the launcher's environment says the job
 * has more than one process (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_STEP_NUM_TASKS), libmpi is
 * loaded at run time (dlopen, so a single-process run needs no MPI installed at all) and
 * MPI_Init runs; otherwise the world is this one process (rank 0 of 1) and every collective is
 * a copy or nothing. A binary built without MPI headers refuses a multi-process launch with a
 * message instead of running N independent copies. st_comm_split() may then divide the world
 * into groups of consecutive ranks (a sweep's data-parallel trials): from then on rank, size and
 * every collective below are the group's.
 *
 * Every collective is called by all ranks in the same order (MPI's rule) and blocks:
 *   allreduce_sum   float / double buffers summed over the ranks, the same result on every rank
 *                   (MPI_Allreduce: its algorithm is a function of (ranks, count), so a rerun with
 *                   the same N gives the same bits)
 *   allgather       `bytes` from every rank into recv (size * bytes), rank order
 *   gatherv         variable-length byte blocks to rank 0, rank order (rank 0's recv holds the
 *                   sum of counts; other ranks pass NULL)
 *   broadcast       root's bytes to every rank (broadcast_idle: the same, for a long wait)
 *   barrier
 *   allreduce_device  a device buffer of backend be: NCCL on the CUDA backend when built with it,
 *                   else through a host copy
 * A collective that does not complete within SIMTUNE_COMM_TIMEOUT seconds (default 600) means a
 * rank died or hangs: the watchdog prints which collective this rank (its world rank) waited in
 * and exits (3); the launcher then ends the job, so nothing waits forever. A rank that dies is
 * named by mpirun.
 * Errors inside MPI abort the job (MPI's default handler).
 * Callers: cmd/main.c (init, finalize), cmd/train.c, train/trainer.c, train/loss.c,
 * cmd/embed.c, cmd/topk.c, cmd/sweep.c (split), train/sweep.c (a group's trials);
 * kernels/cuda/comm_nccl.cu (the NCCL id's broadcast, over the group).
 */
#ifndef ST_COMM_H
#define ST_COMM_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 0, or -1 with st_error_set when launched as several processes but MPI cannot be loaded or
 * was not compiled in. Idempotent. */
int st_comm_init(int *argc, char ***argv);
/* MPI_Finalize when MPI was initialised; nothing otherwise. */
void st_comm_finalize(void);

int st_comm_rank(void);
int st_comm_size(void);
/* The rank's index among the ranks of its node (GPU choice), 0 for one process. */
int st_comm_local_rank(void);
/* Split the world into groups of group_size consecutive ranks (world ranks g*G .. g*G+G-1 form
 * group g): from then on st_comm_rank, st_comm_size and every collective act on this rank's
 * group, e.g. one data-parallel sweep trial per group. group_size 1 makes every rank a world of
 * one (rank 0 of 1, collectives local) without any MPI call. Called at most once, by every rank
 * with the same group_size (MPI_Comm_split is collective), before any collective of the group.
 * 0, or -1 with st_error_set when the world's size is not a multiple of group_size. */
int st_comm_split(int group_size);

/* st_comm_broadcast for a wait of unbounded length (a sweep group's members waiting for their
 * leader's next trial while it waits for the queue): not watched by the watchdog, and the ranks
 * wait sleeping, not spinning in MPI's progress loop. Every rank of the group calls it (it
 * matches only itself, not st_comm_broadcast). */
void st_comm_broadcast_idle(void *buf, size_t bytes, int root);

void st_comm_allreduce_sum(float *buf, size_t n);
void st_comm_allreduce_sum_f64(double *buf, size_t n);
void st_comm_allgather(const void *send, size_t bytes, void *recv);
void st_comm_gatherv(const void *send, size_t bytes, void *recv_at_root);
void st_comm_broadcast(void *buf, size_t bytes, int root);
void st_comm_barrier(void);
void st_comm_allreduce_device(st_backend *be, float *device_buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
