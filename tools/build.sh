#!/bin/sh
# build.sh: configure and build simtune into build/ (Release). Extra arguments go to cmake,
# e.g. tools/build.sh -DSIMTUNE_CUDA=OFF. CI=true adds -DSIMTUNE_WERROR=ON; SIMTUNE_CUDA=REQUIRE in
# the environment (set by .ci/run, whose machine has the CUDA toolkit) makes a missing CUDA
# library a configure error instead of a CPU-only build.
set -eu
cd "$(dirname "$0")/.."
WERROR=OFF
[ "${CI:-}" = "true" ] && WERROR=ON
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSIMTUNE_WERROR=$WERROR \
  ${SIMTUNE_CUDA:+-DSIMTUNE_CUDA=$SIMTUNE_CUDA} "$@" >/dev/null
cmake --build build -j"$(nproc)"
