# tests/data.cmake: the data layer (data/): decoders, transforms, datasets, samplers, loader.
st_add_test(NAME test_data_decode SOURCES test_data_decode.c LIBS st_data)

# torchvision/PIL references, generated at test time into the build tree (never committed)
st_add_script_test(NAME data_torchvision_fixtures LABELS python
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/data_torchvision_fixtures.py)
set_tests_properties(data_torchvision_fixtures PROPERTIES FIXTURES_SETUP data_tv)
st_add_test(NAME test_data_transform SOURCES test_data_transform.c LIBS st_data LABELS cpu python)
set_tests_properties(test_data_transform PROPERTIES FIXTURES_REQUIRED data_tv)
st_add_test(NAME test_data_dataset SOURCES test_data_dataset.c LIBS st_data)
st_add_test(NAME test_data_loader SOURCES test_data_loader.c LIBS st_data)
st_add_test(NAME test_data_shared SOURCES test_data_shared.c LIBS st_data)

st_add_script_test(NAME data_bench_cli COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/data_bench_cli.py)
