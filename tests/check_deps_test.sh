#!/usr/bin/env bash
# check_deps_test.sh SOURCE_DIR: tools/check-deps.sh passes on the source tree, and fails, naming
# FILE:LINE and the include, on a temporary copy of real files with a forbidden include injected:
# a backwards include (kernels/ -> train/), a file-format header in kernels/ (hdf5.h), and the
# base module reaching up into data/ (data/base/ -> data/dataset.h).
set -euo pipefail
src=$1
check=$src/tools/check-deps.sh
fail() { echo "check_deps_test: $*" >&2; exit 1; }

"$check" "$src" || fail "the source tree breaks the layer order (output above)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/kernels" "$tmp/data/base"
cp "$src/data/dataset.h" "$tmp/data/" # an include target must exist to resolve beside the file

expect_violation() { # FILE INJECTED_LINE WHY: FILE with INJECTED_LINE as line 1 must fail
    sed "1i $2" "$src/$1" >"$tmp/$1"
    local out rc=0
    out=$("$check" "$tmp" 2>&1) || rc=$?
    ((rc == 1)) || fail "$3: exit $rc, want 1; output: $out"
    [[ $out == *"$1:1: $2"* ]] || fail "$3: the report does not name $1:1 and '$2': $out"
    cp "$src/$1" "$tmp/$1" # unmodified again for the next case
}
expect_violation kernels/arena.c '#include "../train/trainer.h"' "backwards include"
expect_violation kernels/arena.c '#include <hdf5.h>' "hdf5.h in kernels/"
expect_violation data/base/text.c '#include "data/dataset.h"' "base module including data/"

# The unmodified copies pass: the failures above come from the injected lines alone.
"$check" "$tmp" >/dev/null || fail "unmodified copies of kernels/arena.c and data/base/text.c fail"
echo "check_deps_test: ok"
