# The main job end to end: `simtune demo --quick` on generated images (the issue's reduced demo).
st_add_script_test(NAME demo_quick
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/demo_quick.py ${CMAKE_CURRENT_BINARY_DIR}/demo_quick_work
  LABELS slow)
set_tests_properties(demo_quick PROPERTIES TIMEOUT 900)

# The ready-made configs in configs/ validate as shipped.
st_add_script_test(NAME check_configs COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/check_configs.py LABELS cpu)
