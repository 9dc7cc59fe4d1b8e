#!/bin/sh
# build.sh: configure and build simtune into build/ (Release). Extra arguments go to cmake,
# e.g. tools/build.sh -DSIMTUNE_CUDA=OFF. CI=true adds -DSIMTUNE_WERROR=ON.
set -eu
cd "$(dirname "$0")/.."
WERROR=OFF
[ "${CI:-}" = "true" ] && WERROR=ON
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSIMTUNE_WERROR=$WERROR "$@" >/dev/null
cmake --build build -j"$(nproc)"
