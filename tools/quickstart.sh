#!/bin/sh
# quickstart.sh: README's first command. Installs what is missing, builds, and runs the main job
# (`simtune demo`) on its built-in generated dataset. Output goes under checkpoints/.
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
exec build/simtune demo "$@"
