#!/bin/sh
# numerics-matrix.sh: the numerics tests (PyTorch parity of ops, losses, optimizers, ResNet
# features and gradients, training steps, conv weight layouts; finite-difference gradient checks; top-k and
# post-processing) under each OpenBLAS core and each oneDNN ISA limit, at unchanged tolerances,
# so no result can depend on the kernel a user's machine happens to pick.
#
#   tools/numerics-matrix.sh [BUILD_DIR]      (default build/, already built)
#
# Legs: the environment as given; OPENBLAS_CORETYPE = Haswell, Zen, SkylakeX, Sandybridge,
# Prescott; ONEDNN_MAX_CPU_ISA = AVX2. Each leg proves it ran what it claims: every "Core:" line
# that OpenBLAS prints under OPENBLAS_VERBOSE=2 in the leg's test log must name the leg's core,
# and oneDNN's verbose "isa:" line (from a convolution test run in the same environment) must name
# the ISA. A leg whose instructions the CPU lacks is reported NOT RUN and is not a pass.
# Prints one line per leg and a closing "numerics: N passed, N failed" line; exits 1 on a failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
[ -x "$BUILD/tests/test_ops_grad" ] || { echo "numerics-matrix: build $BUILD first (tools/build.sh)" >&2; exit 2; }
cd "$BUILD"
TESTS='^(test_ops_grad|test_ops_torch|test_loss_kernels|test_losses_torch|test_optim_torch|test_train_loss|test_train_optim|test_train_small_model|test_resnet_parity|test_trainer_steps|test_topk|test_postprocess|test_conv_layout)$'
FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
LOGS=numerics-matrix
mkdir -p "$LOGS"
passed=0 failed=0 not_run=0

cpu_has() { # cpu_has FLAG...: all present in /proc/cpuinfo
  for f in "$@"; do case "$FLAGS" in *" $f "*) ;; *) echo "$f"; return 1 ;; esac; done
}

needs() { # the CPU flags a leg's kernels execute
  case "$1" in
    Haswell|Zen|AVX2) echo "avx2 fma" ;;
    SkylakeX) echo "avx512f avx512bw avx512vl avx512dq" ;;
    Sandybridge) echo "avx" ;;
    Prescott) echo "pni" ;;
    *) echo "" ;;
  esac
}

# leg NAME CORETYPE ISA: CORETYPE/ISA empty = as given by the environment.
leg() {
  name=$1 core=$2 isa=$3
  if ! missing=$(cpu_has $(needs "${core:-$isa}")); then
    echo "leg $name: NOT RUN (this CPU lacks $missing)"
    not_run=$((not_run + 1))
    return
  fi
  log="$LOGS/$name.log"
  (
    [ -n "$core" ] && export OPENBLAS_CORETYPE="$core"
    [ -n "$isa" ] && export ONEDNN_MAX_CPU_ISA="$isa"
    export OPENBLAS_VERBOSE=2
    # The PyTorch fixtures (float64 references) are made once, by the first leg; later legs
    # reuse them (-FA: no fixture setup) and rerun only the simtune side.
    if [ "$first_leg" = 1 ]; then
      ctest -j2 --output-on-failure -R "$TESTS" >"$log" 2>&1
    else
      ctest -j2 --output-on-failure -R "$TESTS" -FA '.*' >"$log" 2>&1
    fi
    echo "ctest exit $?" >>"$log"
    cp Testing/Temporary/LastTest.log "$LOGS/$name.tests.log"
    ONEDNN_VERBOSE=1 tests/test_ops_grad 2>&1 | grep -m1 ',isa:' >"$LOGS/$name.isa"
  )
  cores=$(grep -ho '^Core: [A-Za-z0-9]*' "$LOGS/$name.tests.log" | sort -u | tr '\n' ' ')
  isa_line=$(sed 's/.*isa://' "$LOGS/$name.isa")
  ran=$(grep -c '^ *[0-9]*/[0-9]* Test' "$log")
  problem=""
  grep -q '^ctest exit 0$' "$log" || problem="tests failed (see $BUILD/$log)"
  [ -n "$cores" ] || problem="$problem; OpenBLAS printed no core line"
  [ "$(echo "$cores" | wc -w)" -le 2 ] || problem="$problem; several cores: $cores"
  [ -z "$core" ] || [ "$cores" = "Core: $core " ] || problem="$problem; asked $core, ran $cores"
  if [ "$isa" = AVX2 ]; then
    case "$isa_line" in *"AVX2"*) ;; *) problem="$problem; oneDNN ran '$isa_line', not AVX2" ;; esac
    case "$isa_line" in *"512"*) problem="$problem; oneDNN ran '$isa_line', not AVX2" ;; esac
  fi
  if [ -z "$problem" ]; then
    echo "leg $name: PASS ($ran tests; OpenBLAS ${cores% }; oneDNN $isa_line)"
    passed=$((passed + 1))
  else
    echo "leg $name: FAIL: ${problem#; } ($ran tests; OpenBLAS ${cores% }; oneDNN $isa_line)"
    grep -E 'FAIL|Failed|\*\*\*' "$log" | head -20
    failed=$((failed + 1))
  fi
}

first_leg=1
leg default "" ""
first_leg=0
for core in Haswell Zen SkylakeX Sandybridge Prescott; do leg "openblas-$core" "$core" ""; done
leg onednn-AVX2 "" AVX2
[ "$not_run" -eq 0 ] || echo "numerics-matrix: $not_run leg(s) not run on this CPU (not counted as passes)"
echo "numerics: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
