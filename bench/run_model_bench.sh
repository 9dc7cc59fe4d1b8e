#!/bin/sh
# run_model_bench.sh: simtune vs PyTorch (Debian python3-torch) on the same shapes, side by side,
# in one run: the core issue's targets (ResNet-50 at 224, batch 16, 2 threads) and the
# fine-tuning one (triplet loss, P=4 x K=4, frozen up to conv4_block6_out).
#
# usage: bench/run_model_bench.sh [BUILD_DIR] [STEPS]     (defaults: build, 10)
# Prints a markdown table (images/s, peak RSS, ratio) ready for docs/benchmarks.md.
set -eu
BUILD=${1:-build}
STEPS=${2:-10}
SIMTUNE="$BUILD/simtune"
PY=/usr/bin/python3
HERE=$(dirname "$0")
THREADS=2
[ -x "$SIMTUNE" ] || { echo "run_model_bench: $SIMTUNE not found; build first (tools/build.sh)" >&2; exit 1; }

field() { # field NAME JSON
  printf '%s' "$2" | $PY -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}

echo "| case | simtune img/s | PyTorch img/s | ratio | simtune peak RSS MB | PyTorch peak RSS MB |"
echo "|---|---|---|---|---|---|"
run_case() { # NAME MODE ARCH FREEZE LOSS
  name=$1 mode=$2 arch=$3 freeze=$4 loss=$5
  ours=$("$SIMTUNE" bench "$mode" --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" --threads $THREADS \
         --freeze-until "$freeze" --loss "$loss" --json | tail -1)
  best_torch=""
  for layout in "" "--channels-last"; do
    t=$($PY "$HERE/torch_bench.py" "$mode" --arch "$arch" --image-size 224 --batch 16 --steps "$STEPS" \
        --threads $THREADS --freeze-until "$freeze" --loss "$loss" $layout | tail -1)
    if [ -z "$best_torch" ] || [ "$(printf '%s\n%s' "$t" "$best_torch" | $PY -c "import json,sys; a,b=[json.loads(l) for l in sys.stdin]; print(int(a['images_per_second']>b['images_per_second']))")" = 1 ]; then
      best_torch=$t
    fi
  done
  o=$(field images_per_second "$ours"); p=$(field images_per_second "$best_torch")
  orss=$(field peak_rss_mb "$ours"); prss=$(field peak_rss_mb "$best_torch")
  ratio=$($PY -c "print(f'{$o/$p:.2f}x')")
  printf '| %s | %.2f | %.2f | %s | %.0f | %.0f |\n' "$name" "$o" "$p" "$ratio" "$orss" "$prss"
}
run_case "infer resnet50" infer resnet50 none xent
run_case "infer tv_resnet50" infer tv_resnet50 none xent
run_case "train resnet50 (xent)" train resnet50 none xent
run_case "train tv_resnet50 (xent)" train tv_resnet50 none xent
run_case "train resnet50, frozen to conv4_block6_out (xent)" train resnet50 conv4_block6_out xent
run_case "fine-tune resnet50 triplet P4xK4, frozen to conv4_block6_out" train resnet50 conv4_block6_out triplet
echo
echo "PyTorch: best of NCHW and channels_last per case; $THREADS threads each; $STEPS timed steps after 2 warm-up steps."
