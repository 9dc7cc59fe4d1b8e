# gpu_train_step.cmake: one whole ResNet training step (forward, loss, backward, SGD and Adam)
# on the CUDA backend against the CPU backend (test_gpu_train_step.c). Label gpu: run with
# `ctest -L gpu` on a machine with an NVIDIA GPU; without a device, or in a build without CUDA,
# the test exits 77 and ctest reports it skipped (SKIP_RETURN_CODE 77 set by st_add_test), a
# failure naming the reason under SIMTUNE_REQUIRE_GPU=1 (tests/test_util.h: test_skip_no_gpu).
st_add_test(NAME test_gpu_train_step SOURCES test_gpu_train_step.c LIBS st_train LABELS gpu)
