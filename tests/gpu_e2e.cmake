# gpu_e2e.cmake: `train` (twice, and --resume), `embed`, `search`, `eval` and `topk` with
# --device cuda against the same commands on the CPU (tests/test_gpu_e2e.py), on 6 x 8 generated
# images. Label gpu; exits 77 when the CUDA backend does not open (a failure under
# SIMTUNE_REQUIRE_GPU=1).
st_add_script_test(NAME gpu_e2e_data COMMAND $<TARGET_FILE:make_synthetic> gpu_e2e_data 6 8 40 40 17 0 0
                   LABELS gpu)
set_tests_properties(gpu_e2e_data PROPERTIES FIXTURES_SETUP gpu_e2e_data)
st_add_script_test(NAME test_gpu_e2e COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_gpu_e2e.py
                   LABELS gpu)
set_tests_properties(test_gpu_e2e PROPERTIES FIXTURES_REQUIRED gpu_e2e_data)
