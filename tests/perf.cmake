# perf.cmake: what a step costs and bf16 (issue 16), through the binary as a user runs it.
#   test_perf_bench_cli  `bench peak`; bench train|infer's counted FLOPs against a count made
#                        from the architecture in Python, % of peak, --profile's rows
#   test_bf16_cli        `embed --precision bf16` on ORL and COIL-100 against fp32 (cosine per
#                        image), and the fp32 fallback with its warning where oneDNN has no bf16
st_add_script_test(NAME test_perf_bench_cli COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_perf_bench_cli.py)
st_add_script_test(NAME test_bf16_cli LABELS python
                   COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_bf16_cli.py)
#   test_bf16_train      a bf16 training step against fp32: features, every gradient, BN moving
#                        statistics at bf16 tolerances (C, through the model API)
st_add_test(NAME test_bf16_train SOURCES test_bf16_train.c LIBS st_infer)
#   test_bf16_operands   bf16 between a BN and the bf16 convs next to it: BN outputs and conv dy
#                        stored as bf16 give the FP32-stored path's bits; where the model plans
#                        them and the activation bytes they save (C, ops and model API)
st_add_test(NAME test_bf16_operands SOURCES test_bf16_operands.c LIBS st_infer)
#   test_bf16_kernel_cache  the CPU's one bf16 copy per conv kernel goes stale when it should:
#                        after SGD steps and a direct write, bit-exact against a fresh model
st_add_test(NAME test_bf16_kernel_cache SOURCES test_bf16_kernel_cache.c LIBS st_infer)
#   test_bf16_kept_copies  `simtune train` in bf16: two epochs in one process end bit for bit
#                        where a run resumed after epoch 1 does (no stale dy copy)
st_add_script_test(NAME test_bf16_kept_copies
                   COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_bf16_kept_copies.py
                           $<TARGET_FILE:make_synthetic>)
