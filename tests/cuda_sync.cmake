# cuda_sync.cmake: the SIMTUNE_CUDA_SYNC=1 debugging mode (test_cuda_sync.c): the wrapper table
# covers every backend op (CUDA builds), opening cuda without a device fails with a clear
# message (every build), and with a device a fault is reported naming its op. Labels cpu and
# gpu: the first parts run everywhere, `ctest -L gpu` includes the device part.
st_add_test(NAME test_cuda_sync SOURCES test_cuda_sync.c LIBS st_kernels LABELS cpu gpu)
