# Retrieval: exact top-k, embedding files, metrics, evaluation protocols and their oracles.
st_add_test(NAME test_topk SOURCES test_topk.c LIBS st_cmd)
st_add_test(NAME test_metrics SOURCES test_metrics.c LIBS st_infer)
st_add_test(NAME test_postprocess SOURCES test_postprocess.c LIBS st_infer)
# `simtune embed` and `simtune search` on generated images with a randomly initialised ResNet-18
st_add_test(NAME test_embed SOURCES test_embed.c LIBS st_cmd)

# `simtune eval` run files vs an independent trec_eval reimplementation and a numpy brute force.
st_add_script_test(NAME test_trec_eval
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/check_trec_eval.py
          $<TARGET_FILE:simtune> ${CMAKE_CURRENT_BINARY_DIR}/trec_eval_work
  LABELS cpu python)

# `simtune eval`'s reports with class names, paths and metadata holding HTML/JSON specials and
# a non-UTF-8 path: index.html escapes them, report.json / topk.json stay valid and exact.
st_add_script_test(NAME report_escaping
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/report_escaping.py ${CMAKE_CURRENT_BINARY_DIR}/report_escaping_work
  LABELS cpu python)

# `simtune embed` / `search` / `eval` through the binary on ORL (../shared): the trained recipe
# travels with the weights (a 64 px run embeds and evaluates to its own validation metric
# without flags), any folder or manifest is indexed with metadata, search --json / --html.
st_add_script_test(NAME test_embed_cli
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_embed_cli.py ${CMAKE_CURRENT_BINARY_DIR}/embed_cli
  LABELS cpu python)
