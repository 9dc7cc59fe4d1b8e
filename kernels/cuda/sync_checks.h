/*
 * sync_checks.h: the SIMTUNE_CUDA_SYNC=1 debugging mode. Every op of the CUDA backend is
 * replaced by a wrapper that calls it, then checks cudaGetLastError and cudaStreamSynchronize
 * and, on a failure, exits naming the op (`CUDA: backend op 'fill': ...`). Without it a kernel
 * fault surfaces at the next synchronising call, inside whichever op happens to make it.
 *
 * The wrappers are generated from the op list ST_BACKEND_OPS (backend.h) by C++ templates
 * (sync_checks.cu), which forward any parameter list, so an op added to the list is wrapped
 * without an edit here. destroy is checked before the call: its stream is gone after it.
 * Off by default: st_cuda_backend_create installs the wrappers only when the variable is 1, so
 * a normal run calls the ops directly and pays nothing.
 */
#ifndef ST_CUDA_SYNC_CHECKS_H
#define ST_CUDA_SYNC_CHECKS_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A wrapper as a plain code address; cast back to its member's type before calling. */
typedef void (*cuda_op_fn)(void);

typedef struct cuda_checked_op {
    const char *name;   /* the op's name in ST_BACKEND_OPS, which a failure prints */
    cuda_op_fn wrapper; /* what cuda_sync_checks_install puts in the op's member */
} cuda_checked_op;

/* One entry per op, in ST_BACKEND_OPS order (tests/test_cuda_sync.c checks the coverage). */
extern const cuda_checked_op cuda_checked_ops[];
extern const int cuda_checked_op_count;

/* Replace every op member of be (a CUDA backend) by its checking wrapper. */
void cuda_sync_checks_install(st_backend *be);

#ifdef __cplusplus
}
#endif
#endif
