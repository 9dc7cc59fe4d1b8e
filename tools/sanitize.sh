#!/bin/sh
# sanitize.sh: build with AddressSanitizer + UndefinedBehaviorSanitizer (Debug, CPU only) and
# run the test suite under them, leak checking on. Extra arguments go to ctest, e.g.
# tools/sanitize.sh -LE slow. Library caches kept until exit are suppressed (tests/lsan.supp).
set -eu
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSIMTUNE_CUDA=OFF -DSIMTUNE_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$(nproc)"
cd build-asan
# fast_unwind_on_malloc=0: full allocation stacks through libraries built without frame
# pointers (Open MPI's), so that tests/lsan.supp can name them
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$(pwd)/../tests/lsan.supp
export OMPI_MCA_mca_base_component_disable_dlclose=1 # Open MPI's plugins keep their names in leak stacks
exec ctest --output-on-failure -j2 --timeout 1800 "$@"
