/*
 * cuda_check.h: the check macros for every CUDA runtime, cuBLAS and cuDNN call, and for kernel
 * launches. One family, like kernels/check.h: a failure prints the library, the statement, the
 * library's status string and the function, then st_fail_at adds file:line and exits 1.
 *
 *   CUDA_CHECK(cudaMalloc(&p, bytes));
 *   CUBLAS_CHECK(cublasGemmEx(...));
 *   CUDNN_CHECK(cudnnConvolutionForward(...));
 *   kernel<<<grid, block, 0, stream>>>(...); CUDA_CHECK_LAUNCH("kernel");
 *
 * CUDA_CHECK_LAUNCH catches launch-configuration errors (cudaGetLastError, which does not wait
 * for the kernel); faults inside a kernel surface at the next checked synchronising call.
 * Valid C11 and C++17: used by the .c wiring, the .cu kernels and cmd/doctor.c.
 */
#ifndef ST_CUDA_CHECK_H
#define ST_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "../check.h"

#define CUDA_CHECK(call)                                                                     \
    do {                                                                                     \
        cudaError_t st_cuda_status_ = (call);                                                \
        if (st_cuda_status_ != cudaSuccess)                                                  \
            st_fail_at(__FILE__, __LINE__, "CUDA: %s: %s (in %s)", #call,                    \
                       cudaGetErrorString(st_cuda_status_), __func__);                       \
    } while (0)

#define CUBLAS_CHECK(call)                                                                   \
    do {                                                                                     \
        cublasStatus_t st_cublas_status_ = (call);                                           \
        if (st_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                      \
            st_fail_at(__FILE__, __LINE__, "cuBLAS: %s: %s (in %s)", #call,                  \
                       cublasGetStatusString(st_cublas_status_), __func__);                  \
    } while (0)

#define CUDNN_CHECK(call)                                                                    \
    do {                                                                                     \
        cudnnStatus_t st_cudnn_status_ = (call);                                             \
        if (st_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                        \
            st_fail_at(__FILE__, __LINE__, "cuDNN: %s: %s (in %s)", #call,                   \
                       cudnnGetErrorString(st_cudnn_status_), __func__);                     \
    } while (0)

/* After every <<<...>>> launch; kernel_name says which launch failed. */
#define CUDA_CHECK_LAUNCH(kernel_name)                                                       \
    do {                                                                                     \
        cudaError_t st_cuda_status_ = cudaGetLastError();                                    \
        if (st_cuda_status_ != cudaSuccess)                                                  \
            st_fail_at(__FILE__, __LINE__, "CUDA: launch of %s: %s (in %s)", kernel_name,    \
                       cudaGetErrorString(st_cuda_status_), __func__);                       \
    } while (0)

#endif
