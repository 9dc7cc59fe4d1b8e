#!/bin/sh
# run_perf_bench.sh: the share of the machine's peak (issue 16), in one run: `simtune bench peak`,
# then for resnet50 and tv_resnet50 at 224 px, batch 16, 2 threads, inference and full training
# in fp32 and bf16, simtune (with its counted FLOPs, % of the measured peak and --profile) next
# to PyTorch (bench/torch_bench.py: the best of NCHW and channels_last; bf16 through its CPU
# autocast), each with its peak RSS; then resnet50 fine-tuning frozen to conv4_block6_out and
# with the batch-hard triplet loss (issue 16 item 2: "at least as efficient"). Cases run
# interleaved, simtune then PyTorch, so a load change hits both.
#
# usage: bench/run_perf_bench.sh [BUILD_DIR] [STEPS] [PROFILE_OUT]   (defaults: build, 6, none)
# Prints a markdown table ready for docs/benchmarks.md; with PROFILE_OUT, simtune's --profile
# tables of every case go to that file.
set -eu
BUILD=${1:-build}
STEPS=${2:-6}
PROFILE_OUT=${3:-/dev/null}
SIMTUNE="$BUILD/simtune"
PY=/usr/bin/python3
HERE=$(dirname "$0")
THREADS=2
[ -x "$SIMTUNE" ] || { echo "run_perf_bench: $SIMTUNE not found; build first (tools/build.sh)" >&2; exit 1; }

field() { # field NAME JSON
  printf '%s' "$2" | $PY -c "import json,sys; v=json.load(sys.stdin).get('$1'); print('' if v is None else v)"
}

peak=$("$SIMTUNE" bench peak --threads $THREADS --json | tail -1)
echo "Peak on $THREADS threads: FP32 $(field fp32_gflops "$peak") GFLOP/s ($(field fp32_isa "$peak")), bf16 $(field bf16_gflops "$peak") GFLOP/s"
echo
echo "| case | precision | simtune img/s | GFLOP/img | % of peak | PyTorch img/s | ratio | simtune RSS MB | PyTorch RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|"
: > "$PROFILE_OUT"
run_case() { # MODE ARCH PRECISION [OPTIONS both take: --freeze-until L, --loss triplet]
  mode=$1 arch=$2 prec=$3
  shift 3
  label="$mode $arch${*:+ $*}"
  out=$("$SIMTUNE" bench "$mode" --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" --threads $THREADS \
        --precision "$prec" --profile --json "$@")
  { echo "## $label $prec"; printf '%s\n' "$out" | sed '$d'; echo; } >> "$PROFILE_OUT"
  ours=$(printf '%s\n' "$out" | tail -1)
  flag=""; [ "$prec" = bf16 ] && flag="--bf16"
  best=0 best_rss=0 # PyTorch's RSS is that of its faster layout
  for layout in "" "--channels-last"; do
    t=$($PY "$HERE/torch_bench.py" "$mode" --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" \
        --threads $THREADS $flag $layout "$@" | tail -1)
    ips=$(field images_per_second "$t")
    if $PY -c "import sys; sys.exit(0 if $ips > $best else 1)"; then best=$ips best_rss=$(field peak_rss_mb "$t"); fi
  done
  o=$(field images_per_second "$ours")
  printf '| %s | %s | %.2f | %.2f | %.1f%% | %.2f | %s | %.0f | %.0f |\n' "$label" "$(field precision "$ours")" "$o" \
    "$(field gflop_per_image "$ours")" "$(field percent_of_peak "$ours")" "$best" "$($PY -c "print(f'{$o/$best:.2f}x')")" \
    "$(field peak_rss_mb "$ours")" "$best_rss"
}
for arch in resnet50 tv_resnet50; do
  for mode in infer train; do
    for prec in fp32 bf16; do run_case "$mode" "$arch" "$prec"; done
  done
done
for prec in fp32 bf16; do
  run_case train resnet50 "$prec" --freeze-until conv4_block6_out
  run_case train resnet50 "$prec" --loss triplet
done
echo
echo "% of peak: simtune's counted FLOPs (convolutions and dense layers, 2 per multiply-add, backward"
echo "passes where they run) x images/s over the peak of the precision's arithmetic measured at the"
echo "start of each simtune run; PyTorch: best of NCHW and channels_last; $STEPS timed steps after 2 warm-up steps."
