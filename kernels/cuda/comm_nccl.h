/* comm_nccl.h: the NCCL side of kernels/comm.h, compiled when the CUDA backend is built and
 * nccl.h / libnccl are found (SIMTUNE_HAVE_NCCL). Called only by kernels/comm.c. */
#ifndef ST_COMM_NCCL_H
#define ST_COMM_NCCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sum a device buffer of the CUDA backend over the ranks, in place. The first call creates the
 * NCCL communicator (its id broadcast from rank 0 over MPI), one GPU per rank. */
void st_nccl_allreduce_sum(float *device_buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
