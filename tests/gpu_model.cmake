# gpu_model.cmake: whole ResNet-50s (Keras and torchvision) at 224 px, batch 16, on the CUDA
# backend against the CPU backend: forward/backward parity, three SGD and Adam steps, a partial
# batch, a step repeated bit-identically (test_gpu_model.c). Label gpu; exits 77 without a
# device (a failure under SIMTUNE_REQUIRE_GPU=1). Minutes of CPU time: the CPU side is the
# reference.
st_add_test(NAME test_gpu_model SOURCES test_gpu_model.c LIBS st_train LABELS gpu)
