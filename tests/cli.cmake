# cli.cmake: what every command shares (cmd/cli.c): strict parsing of numeric options.
st_add_script_test(NAME cli_args COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli_args.py)
