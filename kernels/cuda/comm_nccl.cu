/*
 * comm_nccl.cu: NCCL all-reduce of device buffers for data-parallel training on the CUDA backend
 * (contract in comm_nccl.h; kernels/comm.h's st_comm_allreduce_device calls it).
 *
 * The backend computes on its own non-blocking stream, which this file cannot see: the device
 * is synchronised before the all-reduce (the gradients are complete) and the all-reduce's stream
 * after it (the optimizer reads the sums). NCCL's ring order is fixed for a given set of GPUs and
 * NCCL_ALGO, so a rerun on the same GPUs gives the same bits.
 */
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "../comm.h"
#include "comm_nccl.h"
#include "cuda_check.h"

#define NCCL_CHECK(call)                                                                     \
    ST_LIBRARY_CHECK_("NCCL: ", ncclResult_t, call, #call, ncclSuccess, ncclGetErrorString)

static ncclComm_t nccl_comm;
static cudaStream_t nccl_stream;

static void nccl_open(void) {
    ncclUniqueId id;
    if (st_comm_rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    st_comm_broadcast(&id, sizeof id, 0);
    CUDA_CHECK(cudaStreamCreateWithFlags(&nccl_stream, cudaStreamNonBlocking));
    NCCL_CHECK(ncclCommInitRank(&nccl_comm, st_comm_size(), id, st_comm_rank()));
}

extern "C" void st_nccl_allreduce_sum(float *device_buf, size_t n) {
    if (!nccl_comm) nccl_open();
    CUDA_CHECK(cudaDeviceSynchronize());
    NCCL_CHECK(ncclAllReduce(device_buf, device_buf, n, ncclFloat, ncclSum, nccl_comm, nccl_stream));
    CUDA_CHECK(cudaStreamSynchronize(nccl_stream));
}
