# gpu_topk.cmake: exact top-k on the CUDA backend against the CPU at N = 100000, k = 10 and 4000,
# and the resident gallery (infer/topk.h) against the CPU and against a streamed one
# (test_gpu_topk.c). Label gpu; exits 77 without a device (a failure under SIMTUNE_REQUIRE_GPU=1).
st_add_test(NAME test_gpu_topk SOURCES test_gpu_topk.c LIBS st_infer LABELS gpu)
