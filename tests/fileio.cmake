# fileio.cmake: durable writes (data/base/fileio.h, infer/h5util.h) and what `simtune train` does when
# the disk fills up or the training diverges (issue 13 items 6 and 7).
#   test_fileio         data/base/fileio.h: mkdir -p, atomic write/commit/abort, appends, /dev/full
#   test_text           data/base/text.h: HTML escaping, name tables, path stems, and the
#                       parse/name pairs of preprocessing, metric and protocol built on them
#   enospc_shim         LD_PRELOAD library: a folder that runs out of space after N bytes, or
#                       a file whose reads come back corrupted (tests/enospc_shim.c), so these
#                       tests need no root and no mount
#   test_full_disk      `simtune train` on a full disk: checkpoint, metrics line and exported
#                       weights each failing; exit 1 with the OS reason, no signal, earlier
#                       outputs intact and resumable, no .tmp left (tests/test_full_disk.py)
#   test_divergence     `simtune train`: exploding and non-finite losses stop the run; no
#                       non-finite checkpoint written; --resume falls back past a corrupt or
#                       non-finite newest checkpoint; best.h5 read back when written
#                       (tests/test_divergence.py)
# Wall times on 2 idle cores: test_full_disk 20-30 s, test_divergence 40 s.
st_add_test(NAME test_fileio SOURCES test_fileio.c LIBS st_data)
st_add_test(NAME test_text SOURCES test_text.c LIBS st_infer)

add_library(enospc_shim MODULE enospc_shim.c)
target_compile_options(enospc_shim PRIVATE ${ST_WARNINGS})
target_link_libraries(enospc_shim PRIVATE ${CMAKE_DL_LIBS})

st_add_script_test(NAME full_disk_data COMMAND $<TARGET_FILE:make_synthetic> full_disk_data 6 8 40 40 17 0 0)
set_tests_properties(full_disk_data PROPERTIES FIXTURES_SETUP full_disk_data)
st_add_script_test(NAME test_full_disk
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_full_disk.py $<TARGET_FILE:enospc_shim>)
set_tests_properties(test_full_disk PROPERTIES FIXTURES_REQUIRED full_disk_data)
st_add_script_test(NAME test_divergence
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_divergence.py $<TARGET_FILE:enospc_shim>)
set_tests_properties(test_divergence PROPERTIES FIXTURES_REQUIRED full_disk_data)
