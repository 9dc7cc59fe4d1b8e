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

# simtune inspect + torchvision2h5.py end to end, through the simtune binary; reads the export
# test_weights_h5 wrote.
st_add_script_test(NAME test_weights_cli
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_weights_cli.py ${ST_WEIGHTS_FIXTURES}
          ${ST_WEIGHTS_FIXTURES}/weights_export_test.h5 $<TARGET_FILE:simtune>
  LABELS python)
set_tests_properties(test_weights_cli PROPERTIES FIXTURES_REQUIRED "weights_fx;weights_export")

# checkpoint.c is compiled into the test so it needs only st_infer (not the rest of train/).
st_add_test(NAME test_checkpoint SOURCES test_checkpoint.c ${PROJECT_SOURCE_DIR}/train/checkpoint.c
  LIBS st_infer LABELS cpu)
