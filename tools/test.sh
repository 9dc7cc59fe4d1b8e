#!/bin/sh
# test.sh: README's second command. Installs the test extras (tools/install-deps.sh --tests),
# builds, and runs every test (ctest). Tests that need a GPU report "skipped" (exit 77) on
# machines without one. ctest arguments pass through, e.g. tools/test.sh -L python or -LE slow.
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh --tests
tools/build.sh
cd build
exec ctest --output-on-failure -j2 "$@"
