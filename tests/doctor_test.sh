#!/usr/bin/env bash
# doctor_test.sh HAVE_CUDA: `simtune doctor` (SIMTUNE_BIN) exits 0 and its first line states the
# CUDA backend plainly: "not compiled in: <why>" in a build without CUDA; in a CUDA build
# "compiled in; opens on device N: <name>, X GiB (Y GiB free), cuDNN a.b.c" or "compiled in;
# does not open: <the backend's error>" (this machine: no CUDA device). A CUDA build given a bad
# SIMTUNE_CUDA_MATH must say "does not open" with that error, device or not. The library lines
# that followed before (oneDNN, OpenBLAS, HDF5, threads) are still there.
set -uo pipefail
have_cuda=$1
fail() { echo "doctor_test: $*" >&2; exit 1; }
[[ -n ${SIMTUNE_BIN:-} ]] || fail "SIMTUNE_BIN is not set (ctest sets it)"

out=$("$SIMTUNE_BIN" doctor 2>&1)
rc=$?
((rc == 0)) || fail "simtune doctor: exit $rc, want 0: $out"
first=$(head -n 1 <<<"$out")
(($(grep -c '^CUDA backend:' <<<"$out") == 1)) || fail "not exactly one 'CUDA backend:' line: $out"
if [[ $have_cuda == ON ]]; then
    opens='^CUDA backend: +compiled in; opens on device [0-9]+: .+, [0-9.]+ GiB \([0-9.]+ GiB free\), cuDNN [0-9]+\.[0-9]+\.[0-9]+$'
    closed='^CUDA backend: +compiled in; does not open: .+$'
    [[ $first =~ $opens || $first =~ $closed ]] || fail "CUDA build, unexpected first line: $first"
    bad=$(SIMTUNE_CUDA_MATH=no-such-mode "$SIMTUNE_BIN" doctor 2>&1 | head -n 1)
    [[ $bad =~ ^CUDA\ backend:\ +compiled\ in\;\ does\ not\ open:\ .*SIMTUNE_CUDA_MATH ]] ||
        fail "a bad SIMTUNE_CUDA_MATH is not given as the reason: $bad"
else
    [[ $first =~ ^CUDA\ backend:\ +not\ compiled\ in:\ .*without\ CUDA ]] ||
        fail "build without CUDA, unexpected first line: $first"
fi
for line in oneDNN OpenBLAS HDF5 threads; do
    grep -q "^$line: " <<<"$out" || fail "the '$line:' line is missing: $out"
done
echo "doctor_test: $first"
