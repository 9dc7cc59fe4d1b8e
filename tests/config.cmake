# tests/config.cmake: train configs (train/config.c), the Hyperband plan (train/hyperband.c), sweep
# files and the crash-safe sweep runner (train/sweep.c), and `simtune sweep --dry-run`.
# Owner: the config helper.
st_add_test(NAME test_config SOURCES test_config.c LIBS st_train)
st_add_test(NAME test_hyperband SOURCES test_hyperband.c LIBS st_train)
# includes a runner killed with SIGKILL and resumed (a few seconds, mostly fsync)
st_add_test(NAME test_sweep SOURCES test_sweep.c LIBS st_train)
# the CLI: plan JSON against an independent integer Hyperband, tables, exit codes
st_add_script_test(NAME sweep_dry_run
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/sweep_dry_run.py)
