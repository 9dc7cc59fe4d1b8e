#!/usr/bin/env bash
# gpu-bundle.sh [CMAKE_ARG...]: on a machine WITH simtune's Debian packages and the CUDA toolkit
# (a development machine), build `simtune` and every test labelled gpu (ctest -L gpu) for sm_90
# with portable CPU code (SIMTUNE_PORTABLE: x86-64-v3) and the CUDA backend required
# (SIMTUNE_CUDA=REQUIRE), and pack them with every shared library they load except glibc's and
# CUDA's/cuDNN's into .gpu_bundle/bundle.tar.xz (about 25 MB): tools/gpu-check.sh runs those
# binaries on a bare GPU machine that lacks the packages. Extra arguments go to CMake (e.g.
# -DSIMTUNE_WERROR=ON). Environment: SRC (checkout, default: this script's), BUILD (build folder,
# default /tmp/st-bundle-build), CUDA_ARCHS (default 90: the H100/H200 machines lent to the project).
# Adds /.gpu_bundle/ to .git/info/exclude so the bundle is never committed. Takes a few minutes
# (most of it nvcc); meant to finish in under 8.
set -euo pipefail
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
B=${BUILD:-/tmp/st-bundle-build}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
if [[ -d $SRC/.git ]]; then
    grep -qx '/.gpu_bundle/' "$SRC/.git/info/exclude" 2>/dev/null || echo /.gpu_bundle/ >>"$SRC/.git/info/exclude"
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$SRC" -B "$B" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSIMTUNE_PORTABLE=ON \
    -DSIMTUNE_CUDA=REQUIRE -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" "$@"
# The GPU tests that are executables (tests/<name>.c, st_add_test), by their ctest names; the
# script tests among them (tests/test_gpu_e2e.py) run from the checkout with make_synthetic.
mapfile -t gpu_tests < <(ctest --test-dir "$B" -L gpu -N | sed -n 's/^ *Test *#[0-9]*: *//p' |
    while read -r t; do [[ -f $SRC/tests/$t.c ]] && echo "$t"; done)
((${#gpu_tests[@]} > 0)) || { echo "gpu-bundle: no test labelled gpu in $B" >&2; exit 1; }
cmake --build "$B" -j"$(nproc)" --target simtune make_synthetic "${gpu_tests[@]}"

mkdir -p "$STAGE/bin" "$STAGE/lib"
cp "$B/simtune" "$B/tests/make_synthetic" "$STAGE/bin/"
for t in "${gpu_tests[@]}"; do cp "$B/tests/$t" "$STAGE/bin/"; done
printf '%s\n' "${gpu_tests[@]}" >"$STAGE/gpu-tests.txt"   # what gpu-check.sh runs, in order
# Everything the binaries load except the C library (every machine has its own) and CUDA/cuDNN
# (they must match the GPU machine's driver, so they come from that machine).
ldd "$STAGE"/bin/* | awk '/=> \//{print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*)\.so|/(libcuda|libcudart|libcublas|libcublasLt|libcudnn[^/]*|libnvrtc[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$STAGE/lib/"; done
mkdir -p "$SRC/.gpu_bundle"
tar -C "$STAGE" -cf - . | xz -T0 -6 >"$SRC/.gpu_bundle/bundle.tar.xz.tmp"
mv "$SRC/.gpu_bundle/bundle.tar.xz.tmp" "$SRC/.gpu_bundle/bundle.tar.xz"
du -h "$SRC/.gpu_bundle/bundle.tar.xz"
