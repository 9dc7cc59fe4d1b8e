#!/usr/bin/env bash
# check_deps_test.sh SOURCE_DIR: tools/check-deps.sh passes on the source tree, and fails, naming
# FILE:LINE and the include, on a temporary copy of real files with a forbidden include injected:
# a backwards include (kernels/ -> train/) and a file-format header in kernels/ (hdf5.h).
set -euo pipefail
src=$1
check=$src/tools/check-deps.sh
fail() { echo "check_deps_test: $*" >&2; exit 1; }

"$check" "$src" || fail "the source tree breaks the layer order (output above)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/kernels"

expect_violation() { # INJECTED_LINE WHY: arena.c with INJECTED_LINE as line 1 must fail
    sed "1i $1" "$src/kernels/arena.c" >"$tmp/kernels/arena.c"
    local out rc=0
    out=$("$check" "$tmp" 2>&1) || rc=$?
    ((rc == 1)) || fail "$2: exit $rc, want 1; output: $out"
    [[ $out == *"kernels/arena.c:1: $1"* ]] || fail "$2: the report does not name kernels/arena.c:1 and '$1': $out"
}
expect_violation '#include "../train/trainer.h"' "backwards include"
expect_violation '#include <hdf5.h>' "hdf5.h in kernels/"

# The unmodified copy passes: the failures above come from the injected line alone.
cp "$src/kernels/arena.c" "$tmp/kernels/arena.c"
"$check" "$tmp" >/dev/null || fail "an unmodified copy of kernels/arena.c fails"
echo "check_deps_test: ok"
