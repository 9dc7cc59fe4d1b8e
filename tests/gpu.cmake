# gpu.cmake: the CUDA backend checked against the CPU backend, op by op (test_gpu_ops.c).
# Label gpu: run with `ctest -L gpu` on a machine with an NVIDIA GPU. Without a device, or in a
# build without CUDA, the test exits 77 and ctest reports it skipped (SKIP_RETURN_CODE 77 set by
# st_add_test). A whole-training-step parity test joins this label with the trainer.
st_add_test(NAME test_gpu_ops SOURCES test_gpu_ops.c LIBS st_kernels LABELS gpu)
