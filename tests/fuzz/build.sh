#!/bin/sh
# build.sh: build the libFuzzer harnesses of the data layer (clang -fsanitize=fuzzer with
# AddressSanitizer + UndefinedBehaviorSanitizer) and their seed corpora, outside CMake.
#
#   tests/fuzz/build.sh [OUT]              build into OUT (default /tmp/simtune-fuzz)
#   tests/fuzz/build.sh [OUT] run SECONDS  build, then run each fuzzer for SECONDS
#
# Each fuzzer's corpus is OUT/corpus/<name> (seeds copied in, findings added by libFuzzer);
# crashes are written to OUT/crash-* with the input that triggers them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-/tmp/simtune-fuzz}
python=${SIMTUNE_PYTHON:-/usr/bin/python3}
cc=${CC_FUZZ:-clang}
mkdir -p "$out"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 \
  -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I$root"
common="$root/data/decode.c $root/data/dataset.c $root/data/base/fileio.c $root/data/base/text.c $root/kernels/check.c"
for name in jpeg png manifest; do
  $cc $flags -o "$out/fuzz_$name" "$here/fuzz_$name.c" $common -ljpeg -lpng -lz
done
"$python" "$here/make_seeds.py" "$out/seeds"
for name in jpeg png manifest; do
  mkdir -p "$out/corpus/$name"
  cp "$out/seeds/$name"/* "$out/corpus/$name/"
done
echo "built $out/fuzz_jpeg $out/fuzz_png $out/fuzz_manifest"
if [ "${2:-}" = run ]; then
  seconds=${3:-60}
  for name in jpeg png manifest; do
    echo "== fuzz_$name for $seconds s"
    (cd "$out" && "./fuzz_$name" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 "corpus/$name") 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)" || true
  done
fi
