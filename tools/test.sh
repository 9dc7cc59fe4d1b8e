#!/bin/sh
# test.sh: README's second command. Builds and runs every test (ctest). Tests that need a GPU
# report "skipped" (exit 77) on machines without one. Pass ctest arguments through, e.g.
# tools/test.sh -L python   or   tools/test.sh -LE slow
set -eu
cd "$(dirname "$0")/.."
tools/build.sh
cd build
exec ctest --output-on-failure -j2 "$@"
