# gpu_bf16.cmake: bf16 convolutions on the CUDA backend (issue 16 item 5).
#   test_bf16_round  the shared FP32 -> bf16 rounding (kernels/math/bf16.h, what kernels/cuda/conv.cu
#                    rounds with) against the CPU's VCVTNEPS2BF16 bit for bit and against the CPU
#                    backend's bf16 convolutions (label cpu)
#   test_gpu_bf16    the device's bf16 rounding, per-op bf16 convolutions, the bf16 kernel cache,
#                    operands stored as bf16 (x/y/dy_bf16 convs, x/y/dx_bf16 batch norms),
#                    whole models' bf16 forward/backward against the CPU in FP32 and SGD steps
#                    (test_gpu_bf16.c). Label gpu; exits 77 without a device or on one before
#                    compute capability 8.0 (a failure under SIMTUNE_REQUIRE_GPU=1);
#                    `test_gpu_bf16 bf16-cpu` runs it against the CPU emulating cuDNN's bf16.
st_add_test(NAME test_bf16_round SOURCES test_bf16_round.c LIBS st_kernels)
st_add_test(NAME test_gpu_bf16 SOURCES test_gpu_bf16.c LIBS st_infer LABELS gpu)
#   test_gpu_bf16_cli  `bench train` and `bench infer` with --precision bf16 --device cuda through
#                    the binary: no fallback warning, --json says bf16 (test_gpu_bf16_cli.py).
#                    Label gpu; exits 77 when the CUDA backend does not open
st_add_script_test(NAME test_gpu_bf16_cli LABELS gpu
                   COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_gpu_bf16_cli.py)
