# deps.cmake: the layer order kernels <- data <- infer <- train <- cmd, checked by
# tools/check-deps.sh on the source tree, and shown to catch an injected backwards include.
st_add_script_test(NAME check_deps
                   COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/check_deps_test.sh ${PROJECT_SOURCE_DIR}
                   LABELS cpu)
