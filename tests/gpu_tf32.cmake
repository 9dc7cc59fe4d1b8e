# gpu_tf32.cmake: whole ResNet-50s (Keras and torchvision, 224 px, batch 16) in both CUDA math
# modes, SIMTUNE_CUDA_MATH=fp32 and =tf32, against the CPU (test_gpu_tf32.c). Label gpu; exits 77
# without a device (a failure under SIMTUNE_REQUIRE_GPU=1).
st_add_test(NAME test_gpu_tf32 SOURCES test_gpu_tf32.c LIBS st_infer LABELS gpu)
