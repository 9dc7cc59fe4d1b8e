/* cpu_backend.c: wires the CPU op implementations (cpu_ops.h) into an st_backend, one member per
 * entry of ST_BACKEND_OPS (backend.h), and destroys it. */
#include "cpu_backend.h"

#include <omp.h>
#include <stdlib.h>

#include "../check.h"
#include "cpu_ops.h"

void cpu_destroy(st_backend *be) {
    cpu_conv_plans_free(be);
    free(be);
}

st_backend *st_cpu_backend_create(int threads) {
    st_backend *be = ST_CALLOC(1, sizeof *be);
    be->name = "cpu";
    be->threads = threads > 0 ? threads : omp_get_num_procs();
    omp_set_num_threads(be->threads);

#define WIRE_CPU_OP(ret, op, params) be->op = cpu_##op;
    ST_BACKEND_OPS(WIRE_CPU_OP)
#undef WIRE_CPU_OP
    return be;
}
