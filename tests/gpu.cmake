# gpu.cmake: the CUDA backend checked against the CPU backend, op by op (test_gpu_ops.c).
# Label gpu: run with `ctest -L gpu` on a machine with an NVIDIA GPU. Without a device, or in a
# build without CUDA, the test exits 77 and ctest reports it skipped (SKIP_RETURN_CODE 77 set by
# st_add_test); with SIMTUNE_REQUIRE_GPU=1 in the environment that skip is a failure naming the
# reason (tests/test_util.h: test_skip_no_gpu), so `SIMTUNE_REQUIRE_GPU=1 ctest -L gpu` cannot
# pass on a machine where the backend does not open (tools/gpu-check.sh runs it that way).
st_add_test(NAME test_gpu_ops SOURCES test_gpu_ops.c LIBS st_kernels LABELS gpu)
# The no-device path of the GPU tests, checked on machines without a GPU (label cpu): test_gpu_ops
# skips (77) naming the reason, and fails naming it under SIMTUNE_REQUIRE_GPU=1. The script skips
# itself in a build without CUDA and on a machine where test_gpu_ops really runs.
st_add_script_test(NAME gpu_require
                   COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/gpu_require_test.sh
                           $<TARGET_FILE:test_gpu_ops> ${ST_HAVE_CUDA})
# `simtune doctor` states whether the CUDA backend is compiled in and whether it opens, or why not.
st_add_script_test(NAME doctor_cuda_line
                   COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/doctor_test.sh ${ST_HAVE_CUDA})
