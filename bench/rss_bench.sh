#!/bin/sh
# rss_bench.sh: peak RSS of full ResNet-50 training, simtune against PyTorch (Debian python3-torch)
# on the same work, side by side: 224 px, batch 16, 2 threads, 1000-way cross-entropy, SGD with
# momentum, random data (`simtune bench train` and bench/torch_bench.py, both in NCHW and
# channels_last). Peak RSS is what /usr/bin/time -v reports for the whole process.
#
# usage: bench/rss_bench.sh [BUILD_DIR] [RUNS] [STEPS]     (defaults: build, 3, 2)
# Prints a markdown table, one row per run and architecture, ready for docs/benchmarks.md.
# Peak RSS does not depend on the machine's load, so this can run on a shared machine; the
# images/s it does not print would.
set -eu
BUILD=${1:-build}
RUNS=${2:-3}
STEPS=${3:-2}
SIMTUNE="$BUILD/simtune"
PY=/usr/bin/python3
HERE=$(dirname "$0")
TIME=/usr/bin/time
[ -x "$SIMTUNE" ] || { echo "rss_bench: $SIMTUNE not found; build first (tools/build.sh)" >&2; exit 1; }
[ -x "$TIME" ] || { echo "rss_bench: $TIME not found (apt-get install time)" >&2; exit 1; }
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

peak_mb() { # peak_mb COMMAND...: run it, print its peak RSS in MiB
  "$TIME" -v "$@" >/dev/null 2>"$LOG" || { cat "$LOG" >&2; exit 1; }
  awk '/Maximum resident set size/ {printf "%.0f", $NF / 1024}' "$LOG"
}

echo "| run | arch | simtune peak RSS MiB | PyTorch NCHW MiB | PyTorch channels_last MiB |"
echo "|---|---|---|---|---|"
run=1
while [ "$run" -le "$RUNS" ]; do
  for arch in resnet50 tv_resnet50; do
    ours=$(peak_mb "$SIMTUNE" bench train --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" --threads 2)
    nchw=$(peak_mb "$PY" "$HERE/torch_bench.py" train --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" --threads 2)
    cl=$(peak_mb "$PY" "$HERE/torch_bench.py" train --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" --threads 2 --channels-last)
    echo "| $run | $arch | $ours | $nchw | $cl |"
  done
  run=$((run + 1))
done
echo
echo "Each: $STEPS timed steps after 2 warm-up steps, 2 threads; PyTorch $($PY -c 'import torch; print(torch.__version__)')."
