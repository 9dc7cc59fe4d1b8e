/*
 * sync_checks.cu: the checking wrappers of SIMTUNE_CUDA_SYNC=1 (contract in sync_checks.h).
 * Host code only. One template forwards any op's parameters, so the wrappers, the table of
 * names and the installation are all generated from ST_BACKEND_OPS: no op can be missed.
 */
#include "sync_checks.h"

#include <type_traits>

#include "cuda_ops.h"

/* Op indices in list order: CHECKED_OP_alloc, CHECKED_OP_free, ... */
enum {
#define CHECKED_OP_INDEX(ret, op, params) CHECKED_OP_##op,
    ST_BACKEND_OPS(CHECKED_OP_INDEX)
#undef CHECKED_OP_INDEX
    CHECKED_OP_COUNT
};

/* Launch errors first (cudaGetLastError, which also clears them), then faults while the op's
 * kernels ran (the synchronisation returns them). `when` is "after" or "before". */
static void check_stream(st_backend *be, int op, const char *when) {
    const char *name = cuda_checked_ops[op].name; /* the table below, declared in the header */
    cudaError_t launch = cudaGetLastError();
    if (launch != cudaSuccess)
        ST_FAIL("CUDA: backend op '%s': %s (SIMTUNE_CUDA_SYNC=1, checked %s the op)", name,
                cudaGetErrorString(launch), when);
    cudaError_t run = cudaStreamSynchronize(cuda_ctx_of(be)->stream);
    if (run != cudaSuccess)
        ST_FAIL("CUDA: backend op '%s': %s (SIMTUNE_CUDA_SYNC=1, checked %s the op)", name,
                cudaGetErrorString(run), when);
}

template <typename Signature> struct checked_op;

/* Every op takes the backend first (ST_BACKEND_OPS), so the check can reach its stream. */
template <typename R, typename... Args> struct checked_op<R(st_backend *, Args...)> {
    template <R (*fn)(st_backend *, Args...), int op>
    static R call(st_backend *be, Args... args) {
        if constexpr (op == CHECKED_OP_destroy) { /* frees the stream: check what ran before it */
            check_stream(be, op, "before");
            return fn(be, args...);
        } else if constexpr (std::is_void<R>::value) {
            fn(be, args...);
            check_stream(be, op, "after");
        } else {
            R result = fn(be, args...);
            check_stream(be, op, "after");
            return result;
        }
    }
};

#define CHECKED_WRAPPER(op) (&checked_op<decltype(cuda_##op)>::call<cuda_##op, CHECKED_OP_##op>)

extern "C" const cuda_checked_op cuda_checked_ops[] = {
#define CHECKED_OP_ENTRY(ret, op, params) {#op, reinterpret_cast<cuda_op_fn>(CHECKED_WRAPPER(op))},
    ST_BACKEND_OPS(CHECKED_OP_ENTRY)
#undef CHECKED_OP_ENTRY
};
extern "C" const int cuda_checked_op_count = CHECKED_OP_COUNT;

extern "C" void cuda_sync_checks_install(st_backend *be) {
#define INSTALL_CHECKED_OP(ret, op, params) be->op = CHECKED_WRAPPER(op);
    ST_BACKEND_OPS(INSTALL_CHECKED_OP)
#undef INSTALL_CHECKED_OP
}
