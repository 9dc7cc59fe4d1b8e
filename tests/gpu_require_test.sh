#!/usr/bin/env bash
# gpu_require_test.sh TEST_GPU_OPS HAVE_CUDA: on a machine where the CUDA backend does not open,
# test_gpu_ops skips (exit 77, "SKIP: <reason>"), and with SIMTUNE_REQUIRE_GPU=1 the same skip
# is a failure: exit neither 0 nor 77, printing "FAIL: <the same reason>, and
# SIMTUNE_REQUIRE_GPU=1 forbids skipping". Exits 77 itself when there is nothing to check here:
# a build without CUDA (HAVE_CUDA OFF), or a machine with a device (test_gpu_ops really runs).
set -uo pipefail
gpu_ops=$1
have_cuda=$2
fail() { echo "gpu_require_test: $*" >&2; exit 1; }

if [[ $have_cuda != ON ]]; then
    echo "gpu_require_test: CUDA is compiled out of this build" >&2
    exit 77
fi

# Without the variable (unset even if the caller exported it): a skip naming the reason.
out=$(env -u SIMTUNE_REQUIRE_GPU "$gpu_ops" 2>&1)
rc=$?
if ((rc != 77)); then
    echo "gpu_require_test: test_gpu_ops did not skip (exit $rc): a device is present" >&2
    exit 77
fi
reason=$(sed -n 's/^SKIP: //p' <<<"$out")
[[ -n $reason ]] || fail "the skip names no reason: $out"
[[ $reason == *"CUDA"* ]] || fail "the skip reason does not say why CUDA is unusable: $reason"

out=$(SIMTUNE_REQUIRE_GPU=1 "$gpu_ops" 2>&1)
rc=$?
((rc != 0 && rc != 77)) || fail "SIMTUNE_REQUIRE_GPU=1: exit $rc, want a failure (not 0, not 77)"
[[ $out == *"FAIL: $reason, and SIMTUNE_REQUIRE_GPU=1 forbids skipping"* ]] ||
    fail "SIMTUNE_REQUIRE_GPU=1: the failure does not name the reason '$reason': $out"
echo "gpu_require_test: skip (77) without SIMTUNE_REQUIRE_GPU, failure (exit $rc) with it: $reason"
