# tests/readme.cmake: README's "One example per command" block run as written (small sizes
# appended to the lines that train), so README and the commands cannot disagree.
st_add_script_test(NAME readme_examples
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/readme_examples.py
  LABELS cpu python)
