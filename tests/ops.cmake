# ops.cmake: tests of the CPU backend's core ops (kernels/cpu: memory, gemm, conv, batchnorm,
# activation, pool, l2norm).
#   test_ops_grad   finite-difference gradient checks of every differentiable op (C only)
#   test_conv_layout conv kernels in the backend layout: HWIO round trip, zero padding, one
#                   weight buffer for every batch size (also on CUDA when a device exists)
#   test_ops_torch  forward/backward against PyTorch 1.13 in float64 (python oracle): the script
#                   draws inputs, runs ops_torch_runner (a small C driver, not a test by itself)
#                   and compares.
st_add_test(NAME test_ops_grad SOURCES test_ops_grad.c LIBS st_kernels LABELS cpu)
st_add_test(NAME test_conv_layout SOURCES test_conv_layout.c LIBS st_kernels LABELS cpu)

add_executable(ops_torch_runner test_ops_torch.c)
target_include_directories(ops_torch_runner PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(ops_torch_runner PRIVATE ${ST_WARNINGS})
target_link_libraries(ops_torch_runner PRIVATE st_kernels)
st_add_script_test(NAME test_ops_torch
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_ops_torch.py $<TARGET_FILE:ops_torch_runner>
  LABELS cpu python)

# test_embed_pool: the embedder pools and normalises with the backend's ops (or, for R-MAC on the
# host, their formulas): its numbers equal the ops' bit for bit (kernels/math, infer/embedder.c).
st_add_test(NAME test_embed_pool SOURCES test_embed_pool.c LIBS st_infer LABELS cpu)
