/*
 * test_cuda_sync.c: the SIMTUNE_CUDA_SYNC=1 debugging mode (kernels/cuda/sync_checks.h) and
 * opening the CUDA backend without a device.
 *
 * Everywhere:
 *   - with SIMTUNE_CUDA_SYNC=1 set, st_backend_open("cuda") on a machine without a device (or a
 *     build without CUDA) returns NULL at once with the message a command prints: "no CUDA
 *     device: ..." (or "built without CUDA"), never a crash or a half-open backend.
 * In a build with CUDA (no device needed):
 *   - the wrapper table has one entry per op of ST_BACKEND_OPS, in list order, each naming its
 *     own op; installing it on a backend replaces every op member by that op's wrapper, never
 *     the bare cuda_<op>: an op added to the list without a wrapper fails here.
 * With a device:
 *   - the opened backend carries the wrappers, and a fill/download round trip through them
 *     gives the right values;
 *   - a child process (this binary, argument `fault`) fills through an invalid device pointer:
 *     it must exit 1 (not a signal) with a message naming the op 'fill'.
 * Labels cpu and gpu (tests/cuda_sync.cmake): the first two parts run on every machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kernels/backend.h"
#include "kernels/check.h"
#include "test_util.h"
#ifdef SIMTUNE_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/sync_checks.h"

/* Every member of a backend given the wrappers is its op's wrapper, named after the op. */
static void check_wrapper_table(void) {
    st_backend be;
    memset(&be, 0, sizeof be);
    cuda_sync_checks_install(&be);
    int index = 0;
#define CHECK_WRAPPED(ret, op, params)                                                          \
    do {                                                                                        \
        cuda_op_fn member = (cuda_op_fn)be.op, bare = (cuda_op_fn)cuda_##op;                    \
        TEST_CHECK(member && member != bare, "op %s: no checking wrapper installed", #op);      \
        TEST_CHECK(index < cuda_checked_op_count, "op %s: beyond the wrapper table", #op);      \
        if (index < cuda_checked_op_count) {                                                    \
            TEST_CHECK(strcmp(cuda_checked_ops[index].name, #op) == 0,                          \
                       "table entry %d is named %s, the op list has %s", index,                 \
                       cuda_checked_ops[index].name, #op);                                      \
            TEST_CHECK(cuda_checked_ops[index].wrapper == member,                               \
                       "op %s: the installed member is not the wrapper named %s", #op, #op);    \
        }                                                                                       \
        index++;                                                                                \
    } while (0);
    ST_BACKEND_OPS(CHECK_WRAPPED)
#undef CHECK_WRAPPED
    TEST_CHECK(index == cuda_checked_op_count, "%d ops in ST_BACKEND_OPS, %d table entries", index,
               cuda_checked_op_count);
}
#endif

/* With a device: the wrappers are in place and compute the same as the bare ops. */
static void check_round_trip(st_backend *be) {
#ifdef SIMTUNE_HAVE_CUDA
    TEST_CHECK((cuda_op_fn)be->fill != (cuda_op_fn)cuda_fill,
               "SIMTUNE_CUDA_SYNC=1 but fill is the bare op");
#endif
    enum { N = 1000 };
    float *x = be->alloc(be, N * sizeof(float));
    be->fill(be, x, 2.5f, N);
    be->scale(be, x, 2.0f, N);
    float host[N];
    be->download(be, host, x, sizeof host);
    int wrong = 0;
    for (int i = 0; i < N; i++) wrong += host[i] != 5.0f;
    TEST_CHECK(wrong == 0, "fill 2.5 then scale 2 through the wrappers: %d of %d values not 5",
               wrong, N);
    be->free(be, x);
}

/* The child's stderr must name the op, and it must exit 1 rather than die of a signal. */
static void check_fault_names_op(const char *self) {
    char command[1024];
    snprintf(command, sizeof command, "'%s' fault 2>&1", self);
    FILE *child = popen(command, "r");
    ST_CHECK(child, "popen %s", command);
    char output[8192] = "";
    size_t len = fread(output, 1, sizeof output - 1, child);
    output[len] = 0;
    int status = pclose(child);
    TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1,
               "a faulting fill must exit 1, got status %d; output: %s", status, output);
    TEST_CHECK(strstr(output, "backend op 'fill'") != NULL,
               "the fault report does not name op 'fill': %s", output);
}

/* Child mode: a fill through a device address nothing is mapped at. */
static int fault_child(void) {
    st_backend *be = st_backend_open("cuda", 1);
    ST_CHECK(be, "cuda: %s", st_error_get());
    be->fill(be, (float *)(uintptr_t)4096, 1.0f, 1 << 20);
    be->sync(be);
    fprintf(stderr, "the faulting fill went unreported\n");
    return 0;
}

int main(int argc, char **argv) {
    setenv("SIMTUNE_CUDA_SYNC", "1", 1);
    if (argc > 1 && strcmp(argv[1], "fault") == 0) return fault_child();
#ifdef SIMTUNE_HAVE_CUDA
    check_wrapper_table();
#endif
    st_backend *be = st_backend_open("cuda", 1);
    if (!be) {
        const char *message = st_error_get();
#ifdef SIMTUNE_HAVE_CUDA
        TEST_CHECK(strncmp(message, "no CUDA device: ", 16) == 0 && strlen(message) > 16,
                   "opening cuda without a device: unclear message '%s'", message);
#else
        TEST_CHECK(strstr(message, "built without CUDA") != NULL,
                   "opening cuda in a CPU-only build: unclear message '%s'", message);
#endif
        TEST_CHECK(!test_gpu_required(), "SIMTUNE_REQUIRE_GPU=1 but cuda does not open: %s",
                   message);
        printf("no CUDA device here (%s): the device checks did not run\n", message);
    } else {
        check_round_trip(be);
        st_backend_close(be);
        check_fault_names_op(argv[0]);
    }
    return test_finish("test_cuda_sync");
}
