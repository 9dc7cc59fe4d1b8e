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
 * for the kernel); faults inside a kernel surface at the next checked synchronising call, which
 * may belong to a later op. SIMTUNE_CUDA_SYNC=1 checks after every op and names it
 * (sync_checks.h): the way to find the op that faulted.
 * Valid C11 and C++17: used by the .c wiring, the .cu kernels and cmd/doctor.c.
 */
#ifndef ST_CUDA_CHECK_H
#define ST_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "../check.h"

/* The one check: status `call` of type `type` must equal `ok`; a failure prints `prefix`, `text`
 * (what was called), the status string str_fn gives and the function. */
#define ST_LIBRARY_CHECK_(prefix, type, call, text, ok, str_fn)                                \
    do {                                                                                     \
        type st_library_status_ = (call);                                                    \
        if (st_library_status_ != (ok))                                                      \
            st_fail_at(__FILE__, __LINE__, prefix "%s: %s (in %s)", text,                    \
                       str_fn(st_library_status_), __func__);                                \
    } while (0)

#define CUDA_CHECK(call)                                                                     \
    ST_LIBRARY_CHECK_("CUDA: ", cudaError_t, call, #call, cudaSuccess, cudaGetErrorString)
#define CUBLAS_CHECK(call)                                                                   \
    ST_LIBRARY_CHECK_("cuBLAS: ", cublasStatus_t, call, #call, CUBLAS_STATUS_SUCCESS,        \
                      cublasGetStatusString)
#define CUDNN_CHECK(call)                                                                    \
    ST_LIBRARY_CHECK_("cuDNN: ", cudnnStatus_t, call, #call, CUDNN_STATUS_SUCCESS,           \
                      cudnnGetErrorString)

/* After every <<<...>>> launch; kernel_name says which launch failed. */
#define CUDA_CHECK_LAUNCH(kernel_name)                                                       \
    ST_LIBRARY_CHECK_("CUDA: launch of ", cudaError_t, cudaGetLastError(), kernel_name,      \
                      cudaSuccess, cudaGetErrorString)

#endif
