# `simtune serve` (cmd/serve*.c, docs/serve.md) through the binary and HTTP on loopback.
# serve_setup builds the fixture all of them share (tests/serve_common.py): 4 x 6 generated
# images (make_synthetic, tests/sweep_e2e.cmake), a tv_resnet18 trained one epoch at 32 px and
# its index with metadata columns, written by `simtune train` and `simtune embed`.
set(ST_SERVE_FIXTURE ${CMAKE_CURRENT_BINARY_DIR}/serve_fixture)
st_add_script_test(NAME serve_setup
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/serve_setup.py ${ST_SERVE_FIXTURE} $<TARGET_FILE:make_synthetic>
  LABELS cpu python)
set_tests_properties(serve_setup PROPERTIES FIXTURES_SETUP serve_fixture)

# serve_api: answers equal `simtune search --json` and `simtune topk`; the page, images, healthz, metrics;
# POST /index with and without the token; SIGHUP reload; SIGTERM exit 0.
# serve_hardening: upload and pixel limits (a decompression-bomb header), bad k / metric /
# image, path traversal, unknown ids, Content-Types, 503 on a full queue, SIGTERM drains.
# serve_load: 4 clients x 150 searches + 50 malformed uploads: zero 5xx, identical answers,
# RSS flat (about 30 s on 2 busy cores).
# serve_browser: headless Chromium (selenium) uploads through the form and checks the results
# page; keeps serve_browser_work/serve.png.
foreach(t serve_api serve_hardening serve_load serve_browser)
  st_add_script_test(NAME ${t}
    COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/${t}.py ${ST_SERVE_FIXTURE} ${CMAKE_CURRENT_BINARY_DIR}/${t}_work
    LABELS cpu python)
  # two serve tests at once each start servers with 2 threads; the timeout only catches a hang
  set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED serve_fixture TIMEOUT 300)
endforeach()
