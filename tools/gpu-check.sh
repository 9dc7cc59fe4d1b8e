#!/usr/bin/env bash
# gpu-check.sh [OUTDIR]: the one GPU check, on a machine with an NVIDIA GPU, from the project
# checkout (docs/gpu.md, "Running the GPU check"). OUTDIR defaults to $OUT (the device tool's
# output folder), else /tmp/gpu_out. Meant to finish in under 8 minutes (BUDGET seconds, default
# 450): required steps first, optional ones only while the budget lasts.
#
#   1. probe: OS, GPU, driver, tools, cuDNN (system, toolkit or a Python site's nvidia/cudnn),
#      simtune's Debian packages                                                 -> env.txt
#   2. binaries: build here with -DSIMTUNE_CUDA=REQUIRE when the packages exist, else unpack the
#      bundle tools/gpu-bundle.sh made (.gpu_bundle/bundle.tar.xz, carried along) -> build.log
#   3. required: `simtune doctor` must say the backend opens; every test labelled gpu with
#      SIMTUNE_REQUIRE_GPU=1 (a skip is a failure; bundle mode: the test executables, then
#      tests/test_gpu_e2e.py on make_synthetic's images and tests/test_gpu_bf16_cli.py); `bench
#      train` resnet50 fp32, tf32 (SIMTUNE_CUDA_MATH) and bf16 (--precision), tv_resnet50,
#      triplet frozen to conv4_block6_out, `bench infer`, all at
#      224 px batch 64; `topk` on the GPU against the CPU at N=100k D=2048 (k=10 cosine, k=4000 l2)
#                                                          -> tests.log bench.log smi.log topk.log
#   4. optional: compute-sanitizer memcheck of test_gpu_ops, `demo --quick --no-sweep` (the
#      trainer with device auto = cuda), racecheck                       -> tests.log extra.log
# summary.txt has one verdict line per step and the figures. Exit: 0 every required step passed,
# 1 one failed, 3 the machine lacks what the check needs (listed in env.txt).
# Environment: BUDGET; GPU_CHECK_MODE (build, bundle; default: build when the packages and nvcc
# are here, else bundle); BUILD (build folder, default /tmp/st-build); CUDA_ARCHS (default 90:
# H100/H200); GPU_DEV (default cuda; cpu for a dry run of this script on a machine without a GPU,
# where the doctor and GPU test steps must fail); TOPK_N, TOPK_Q (default 100000, 2000);
# BENCH_BATCH, BENCH_STEPS (default 64, 10: smaller for a dry run).
set -u
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
OUTDIR=${1:-${OUT:-/tmp/gpu_out}}
mkdir -p "$OUTDIR"
BUILD=${BUILD:-/tmp/st-build}
BUDGET=${BUDGET:-450}
DEV=${GPU_DEV:-cuda}
TOPK_N=${TOPK_N:-100000}
TOPK_Q=${TOPK_Q:-2000}
BENCH_BATCH=${BENCH_BATCH:-64}
BENCH_STEPS=${BENCH_STEPS:-10}
SUM=$OUTDIR/summary.txt
: >"$SUM"
: >"$OUTDIR/env.txt"
FAILED=0
unset SIMTUNE_CUDA_TF32 # replaced by SIMTUNE_CUDA_MATH; the backend refuses to open when it is set
export OMP_WAIT_POLICY=passive

say() { printf '[%3ds] %s\n' "$SECONDS" "$*" | tee -a "$SUM"; }
left() { echo $((BUDGET - SECONDS)); }
need() { FAILED=1; say "REQUIRED STEP FAILED: $*"; }
# step LOG NAME TIMEOUT CMD...: appends the command's output to OUTDIR/LOG, one verdict line in
# the summary; returns the command's status (99 when the budget is spent).
step() {
    local log=$OUTDIR/$1 name=$2 t=$3
    shift 3
    if (($(left) < 15)); then say "SKIP  $name (budget spent)"; return 99; fi
    (($(left) < t)) && t=$(left)
    printf '\n==== %s (timeout %ss): %s\n' "$name" "$t" "$*" >>"$log"
    local t0=$SECONDS rc=0
    timeout -k 10 "$t" "$@" >>"$log" 2>&1 || rc=$?
    if ((rc == 0)); then say "PASS  $name ($((SECONDS - t0))s)"; else say "FAIL  rc=$rc $name ($((SECONDS - t0))s)"; fi
    return $rc
}

# ---- 1. what this machine has ----------------------------------------------------------
find_cudnn_libdir() { # the folder holding libcudnn.so[.9]: system, toolkit, Python sites, search
    local sites d f
    sites=$(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
    for d in /usr/lib/x86_64-linux-gnu "$CUDA_HOME/lib64" "$CUDA_HOME/lib" $(for s in $sites; do echo "$s/nvidia/cudnn/lib"; done); do
        for f in "$d/libcudnn.so" "$d/libcudnn.so.9"; do [[ -e $f ]] && { echo "$d"; return; }; done
    done
    f=$(timeout 20 find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -1)
    [[ -n $f ]] && dirname "$f"
}

probe() {
    local env=$OUTDIR/env.txt t m
    export PATH=/usr/local/cuda/bin:$PATH
    NVCC=$(command -v nvcc || true)
    CUDA_HOME=${CUDA_HOME:-${NVCC:+$(dirname "$(dirname "$NVCC")")}}
    {
        echo "== os"; uname -srm; grep -E '^PRETTY_NAME=' /etc/os-release; nproc; free -g | sed -n 2p
        echo "== gpu"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
        echo "== tools"
        for t in nvcc cmake ninja gcc pkg-config python3 compute-sanitizer; do printf '%-18s %s\n' "$t" "$(command -v "$t" || echo MISSING)"; done
        nvcc --version 2>&1 | tail -1; cmake --version 2>&1 | head -1
    } >>"$env" 2>&1
    CUDNN_LIBDIR=$(find_cudnn_libdir)
    echo "cuDNN library folder: ${CUDNN_LIBDIR:-MISSING}" >>"$env"
    [[ -n $CUDNN_LIBDIR && ! -e $CUDNN_LIBDIR/libcudnn_cnn.so.9 ]] && echo "MISSING libcudnn_cnn.so.9 beside libcudnn" >>"$env"
    # cuDNN 9 opens its parts (libcudnn_cnn.so.9, ...) at run time through the loader's path
    export LD_LIBRARY_PATH=${CUDNN_LIBDIR:+$CUDNN_LIBDIR:}${CUDA_HOME:+$CUDA_HOME/lib64:}${LD_LIBRARY_PATH:-}
    DEPS="" # simtune's Debian packages (CMakeLists.txt); without them: the bundle
    command -v pkg-config >/dev/null || DEPS+=" pkg-config"
    for m in openblas lapacke yaml-0.1 cairo libpng jansson; do pkg-config --exists "$m" 2>/dev/null || DEPS+=" pc:$m"; done
    ls /usr/include/hdf5/serial/hdf5.h /usr/include/hdf5.h >/dev/null 2>&1 || DEPS+=" hdf5"
    ls /usr/include/oneapi/dnnl/dnnl.h >/dev/null 2>&1 || DEPS+=" dnnl"
    [[ -n $DEPS ]] && echo "MISSING for a build here:$DEPS" >>"$env"
    say "probe: nvcc=${NVCC:-none} cudnn=${CUDNN_LIBDIR:-none} missing-packages:${DEPS:- none}"
}

# ---- 2. binaries: built here, or the carried bundle --------------------------------------
build_here() { # sets BIN and GPU_TESTS (ctest names = executables under $BUILD/tests)
    local generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    # REQUIRE: a configuration that cannot build the CUDA backend stops here, naming what is missing
    step build.log configure 180 cmake -S "$SRC" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DSIMTUNE_CUDA=REQUIRE -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" || { say "configure failed: see build.log"; exit 3; }
    # the executables among the gpu tests (tests/<name>.c); ctest -L gpu also runs the scripts
    mapfile -t GPU_TESTS < <(ctest --test-dir "$BUILD" -L gpu -N | sed -n 's/^ *Test *#[0-9]*: *//p' |
        while read -r t; do [[ -f $SRC/tests/$t.c ]] && echo "$t"; done)
    step build.log build 300 cmake --build "$BUILD" -j"$(nproc)" --target simtune make_synthetic "${GPU_TESTS[@]}" ||
        { say "build failed: see build.log"; exit 1; }
    BIN=$BUILD/simtune TESTS=$BUILD/tests
}

unpack_bundle() { # sets BIN, TESTS and GPU_TESTS from the bundle, LD_LIBRARY_PATH for its libraries
    local b=/tmp/st-bundle lost l
    rm -rf "$b"; mkdir -p "$b/use"
    tar -C "$b" -xJf "$SRC/.gpu_bundle/bundle.tar.xz"
    for _ in 1 2 3 4 5 6; do # only the libraries this machine lacks, transitively
        lost=$(LD_LIBRARY_PATH=$b/use:$LD_LIBRARY_PATH ldd "$b"/bin/* 2>/dev/null | awk '/not found/{print $1}' | sort -u)
        [[ -z $lost ]] && break
        for l in $lost; do
            if [[ -e $b/lib/$l ]]; then cp -L "$b/lib/$l" "$b/use/"; else echo "bundle lacks $l" >>"$OUTDIR/env.txt"; fi
        done
    done
    export LD_LIBRARY_PATH=$b/use:$LD_LIBRARY_PATH
    mapfile -t GPU_TESTS <"$b/gpu-tests.txt"
    BIN=$b/bin/simtune TESTS=$b/bin
    say "bundle mode: $(find "$b/use" -type f | wc -l) carried libraries, tests: ${GPU_TESTS[*]}"
}

binaries() {
    MODE=${GPU_CHECK_MODE:-}
    [[ -z $MODE && -z $DEPS && -n $NVCC ]] && MODE=build
    [[ -z $MODE && -f $SRC/.gpu_bundle/bundle.tar.xz ]] && MODE=bundle
    case $MODE in
    build) build_here ;;
    bundle) unpack_bundle ;;
    *)
        say "cannot build (missing:${DEPS}$([[ -z $NVCC ]] && echo ' nvcc')) and no .gpu_bundle/bundle.tar.xz (run tools/gpu-bundle.sh, carry .gpu_bundle)"
        exit 3
        ;;
    esac
}

# ---- 3. required checks ----------------------------------------------------------------
check_doctor() {
    step bench.log doctor 60 "$BIN" doctor
    grep -Eq '^CUDA backend: +compiled in; opens' "$OUTDIR/bench.log" || need "doctor: the CUDA backend does not open (bench.log)"
}

check_gpu_e2e() { # bundle mode: tests/test_gpu_e2e.py as ctest would run it (gpu_e2e.cmake)
    local d=/tmp/st-gpu-e2e
    rm -rf "$d" && mkdir -p "$d" && (cd "$d" && "$TESTS/make_synthetic" gpu_e2e_data 6 8 40 40 17 0 0 >/dev/null) ||
        { need "test_gpu_e2e: make_synthetic"; return; }
    step tests.log test_gpu_e2e 240 env -C "$d" SIMTUNE_BIN="$BIN" SIMTUNE_REQUIRE_GPU=1 \
        OMP_NUM_THREADS="$(nproc)" python3 "$SRC/tests/test_gpu_e2e.py" || need test_gpu_e2e
    step tests.log test_gpu_bf16_cli 120 env SIMTUNE_BIN="$BIN" SIMTUNE_REQUIRE_GPU=1 \
        python3 "$SRC/tests/test_gpu_bf16_cli.py" || need test_gpu_bf16_cli
}

check_gpu_tests() { # SIMTUNE_REQUIRE_GPU=1: a test that cannot open the backend fails, never skips
    local t
    if [[ $MODE == build ]]; then
        SIMTUNE_REQUIRE_GPU=1 step tests.log "ctest -L gpu" 420 ctest --test-dir "$BUILD" -L gpu --output-on-failure ||
            need "ctest -L gpu"
    else
        for t in "${GPU_TESTS[@]}"; do
            SIMTUNE_REQUIRE_GPU=1 step tests.log "$t" 240 "$TESTS/$t" || need "$t"
        done
        check_gpu_e2e
    fi
    grep -Eq 'Skipped|Not Run|SKIP:' "$OUTDIR/tests.log" && need "a gpu test was skipped (tests.log)"
}

check_benches() { # 224 px, batch BENCH_BATCH (64); the math mode by SIMTUNE_CUDA_MATH (fp32 default, tf32)
    local smi arch math
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -lms 500 >"$OUTDIR/smi.log" 2>&1 &
    smi=$!
    for run in "resnet50 fp32" "resnet50 tf32" "tv_resnet50 fp32"; do
        read -r arch math <<<"$run"
        SIMTUNE_CUDA_MATH=$math step bench.log "bench train $arch 224 b$BENCH_BATCH $math" 150 "$BIN" bench train \
            --device "$DEV" --arch "$arch" --image-size 224 --batch "$BENCH_BATCH" --steps "$BENCH_STEPS" --warmup 3 --json ||
            need "bench train $arch $math"
    done
    step bench.log "bench train resnet50 224 b$BENCH_BATCH bf16" 150 "$BIN" bench train --device "$DEV" \
        --arch resnet50 --batch "$BENCH_BATCH" --steps "$BENCH_STEPS" --warmup 3 --precision bf16 --json ||
        need "bench train resnet50 bf16"
    step bench.log "bench train resnet50 b$BENCH_BATCH triplet frozen conv4" 120 "$BIN" bench train --device "$DEV" \
        --arch resnet50 --batch "$BENCH_BATCH" --steps "$BENCH_STEPS" --warmup 2 --loss triplet --freeze-until conv4_block6_out --json ||
        need "bench train triplet frozen"
    step bench.log "bench infer resnet50 224 b$BENCH_BATCH" 90 "$BIN" bench infer --device "$DEV" --arch resnet50 \
        --batch "$BENCH_BATCH" --steps "$BENCH_STEPS" --json || need "bench infer"
    kill "$smi" 2>/dev/null
}

# Exact top-k, GPU against CPU on the same files: gallery N x 2048 with row N/2 a copy of row 7,
# Q queries (query 0 = gallery row 7: an exact tie, lower row first), k = 10 cosine; 200 queries
# k = 4000 l2 (k >= 3841 takes the 96 KiB shared-memory path).
check_topk() {
    local t=/tmp/st-topk d py=""
    mkdir -p "$t"
    for d in python3 /usr/bin/python3; do # the PyTorch image's python may lack h5py; Debian's has it
        "$d" -c 'import h5py, numpy' 2>/dev/null && { py=$d; break; }
    done
    [[ -n $py ]] || { need "topk: no python3 with h5py and numpy to write and compare the embeddings"; return; }
    step topk.log "topk data" 90 "$py" - "$t" "$TOPK_N" "$TOPK_Q" <<'PY' || { need "topk data"; return; }
import sys, h5py, numpy as np
t, n, q = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = np.random.default_rng(0)
g = r.standard_normal((n, 2048), dtype=np.float32); g[n // 2] = g[7]
qs = r.standard_normal((q, 2048), dtype=np.float32); qs[0] = g[7]
for name, x in (("g", g), ("q", qs), ("q2", r.standard_normal((200, 2048), dtype=np.float32))):
    with h5py.File(f"{t}/{name}.h5", "w") as f:
        f.create_dataset("embeddings", data=x)
PY
    for d in "$DEV" cpu; do
        step topk.log "topk k10 $d" 120 "$BIN" topk --gallery $t/g.h5 --queries $t/q.h5 -k 10 --device "$d" --out "$t/r10_$d.h5" || need "topk k10 $d"
        step topk.log "topk k4000 $d" 120 "$BIN" topk --gallery $t/g.h5 --queries $t/q2.h5 -k 4000 --metric l2 --device "$d" --out "$t/r4k_$d.h5" || need "topk k4000 $d"
    done
    step topk.log "topk gpu==cpu" 60 "$py" - "$t" "$DEV" "$TOPK_N" <<'PY' || need "topk: GPU lists differ from the CPU's beyond near-ties (topk.log)"
import sys, h5py, numpy as np
t, dev, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = 0
for k in ("r10", "r4k"):
    a, b = h5py.File(f"{t}/{k}_{dev}.h5", "r"), h5py.File(f"{t}/{k}_cpu.h5", "r")
    ia, ib, sa, sb = a["indices"][:], b["indices"][:], a["scores"][:], b["scores"][:]
    diff = (ia != ib).any(axis=1)  # a differing row is a near-tie when the score lists agree
    # 1e-4: FP32 dot products of 2048 terms summed in other orders differ by ~1e-6 relative
    near = np.array([np.allclose(sa[i], sb[i], rtol=1e-4, atol=1e-4) for i in np.nonzero(diff)[0]], bool)
    print(k, "rows", len(ia), "different", int(diff.sum()), "near-ties", int(near.sum()),
          "max score diff %.3g" % float(np.abs(sa - sb).max()))
    bad += int((~near).sum())
f = h5py.File(f"{t}/r10_{dev}.h5", "r")
s0, i0 = f["scores"][0, :2], f["indices"][0, :2]
print("query 0 = gallery 7 = gallery N/2: top-2", i0, s0)
bad += bool(s0[0] == s0[1] and list(i0) != [7, n // 2])  # an exact tie: the lower row first
sys.exit(1 if bad else 0)
PY
}

# ---- 4. optional, while the budget lasts -----------------------------------------------
optional_checks() {
    local san
    san=$(command -v compute-sanitizer || true)
    [[ -n $san ]] && SIMTUNE_REQUIRE_GPU=1 step tests.log "memcheck test_gpu_ops" 150 "$san" --tool memcheck --error-exitcode 9 "$TESTS/test_gpu_ops"
    # the trainer with device auto (cuda here): loader, steps, validation top-k, checkpoints
    rm -rf /tmp/st-demo
    step extra.log "demo --quick --no-sweep" 200 "$BIN" demo --quick --no-sweep --configs "$SRC/configs/demo" --out /tmp/st-demo
    grep -o 'epochs, device [a-z]*' "$OUTDIR/extra.log" 2>/dev/null | sort | uniq -c | tee -a "$SUM"
    [[ -n $san ]] && SIMTUNE_REQUIRE_GPU=1 step tests.log "racecheck test_gpu_ops" 150 "$san" --tool racecheck --error-exitcode 9 "$TESTS/test_gpu_ops"
    return 0
}

summary() {
    say "images/s (resnet50 fp32, tf32, tv_resnet50 fp32, resnet50 bf16, triplet frozen, infer): $(grep -ho '"images_per_second": *[0-9.]*' "$OUTDIR/bench.log" | awk -F: '{printf "%s ", $2}')"
    say "GPU utilisation during the benches: $(awk -F, '{u+=$1; n++} END {if (n) printf "%.0f%% mean of %d samples", u/n, n}' "$OUTDIR/smi.log" 2>/dev/null)"
    grep -h '^r10 \|^r4k \|^query 0' "$OUTDIR/topk.log" 2>/dev/null | tee -a "$SUM"
    say "required steps: $( ((FAILED == 0)) && echo ALL PASSED || echo SOME FAILED)"
}

probe
binaries
check_doctor
check_gpu_tests
check_benches
check_topk
optional_checks
summary
exit "$FAILED"
