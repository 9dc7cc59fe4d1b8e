/* cuda_backend.h: the CUDA backend (cuBLAS GEMMs, cuDNN convolutions, own kernels for the rest).
 * Called by st_backend_open("cuda") in kernels/backend.c when built with SIMTUNE_HAVE_CUDA. */
#ifndef ST_CUDA_BACKEND_H
#define ST_CUDA_BACKEND_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL with st_error_set("no CUDA device: <reason>") when no usable device exists.
 * threads: host threads for callers that ask be->threads (0 = all online cores). */
st_backend *st_cuda_backend_create(int threads);

#ifdef __cplusplus
}
#endif
#endif
