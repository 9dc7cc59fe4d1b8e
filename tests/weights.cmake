# weights.cmake: HDF5 weight files, `simtune inspect`, tools/torchvision2h5.py, checkpoints.
#
# weights_fixtures (python) writes every input file once per run into weights_fixtures/ with an
# independent writer (h5py the way Keras writes, torchvision2h5.py) plus PyTorch reference
# features; the C tests that read them require that fixture.

set(ST_WEIGHTS_FIXTURES ${CMAKE_CURRENT_BINARY_DIR}/weights_fixtures)

st_add_script_test(NAME weights_fixtures
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/weights_fixtures.py ${ST_WEIGHTS_FIXTURES}
  LABELS python)
set_tests_properties(weights_fixtures PROPERTIES FIXTURES_SETUP weights_fx)

st_add_test(NAME test_weights_h5 SOURCES test_weights_h5.c LIBS st_infer LABELS cpu python
  ARGS ${ST_WEIGHTS_FIXTURES})
set_tests_properties(test_weights_h5 PROPERTIES FIXTURES_REQUIRED weights_fx FIXTURES_SETUP weights_export)

# simtune inspect + torchvision2h5.py end to end; reads the export test_weights_h5 wrote.
# The command runs through inspect_main.c (same dispatch as train/main.c); pass
# $<TARGET_FILE:simtune> instead to go through the full binary.
add_executable(weights_inspect_main inspect_main.c)
target_include_directories(weights_inspect_main PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(weights_inspect_main PRIVATE ${ST_WARNINGS})
target_link_libraries(weights_inspect_main PRIVATE st_infer)
st_add_script_test(NAME test_weights_cli
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_weights_cli.py ${ST_WEIGHTS_FIXTURES}
          ${ST_WEIGHTS_FIXTURES}/weights_export_test.h5 $<TARGET_FILE:weights_inspect_main>
  LABELS python)
set_tests_properties(test_weights_cli PROPERTIES FIXTURES_REQUIRED "weights_fx;weights_export")

# Same executable, load-time target: warm-cache ResNet50 notop load <= 0.5 s of CPU time.
# Passive OpenMP waiting so idle worker threads spinning at barriers do not count as load time.
add_test(NAME test_weights_speed COMMAND test_weights_h5 ${ST_WEIGHTS_FIXTURES} --speed
  WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_weights_speed PROPERTIES LABELS "cpu;python" SKIP_RETURN_CODE 77
  ENVIRONMENT "${ST_TEST_ENV};OMP_WAIT_POLICY=passive" FIXTURES_REQUIRED weights_fx)

# checkpoint.c is compiled into the test so it needs only st_infer (not the rest of train/).
st_add_test(NAME test_checkpoint SOURCES test_checkpoint.c ${PROJECT_SOURCE_DIR}/train/checkpoint.c
  LIBS st_infer LABELS cpu)
