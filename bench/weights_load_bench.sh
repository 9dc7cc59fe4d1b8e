#!/bin/sh
# weights_load_bench.sh: warm-cache load time of a Keras ResNet50 notop weight file (~95 MB,
# written here by tests/keras_h5.py the way Keras writes it) into simtune's model.
# usage: bench/weights_load_bench.sh [BUILD_DIR]      target: <= 0.5 s
set -eu
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 "$HERE/../tests/keras_h5.py" "$TMP/resnet50_notop.h5" --arch resnet50
ls -l "$TMP/resnet50_notop.h5"
"$BUILD/simtune" bench load --weights "$TMP/resnet50_notop.h5" --steps 5
