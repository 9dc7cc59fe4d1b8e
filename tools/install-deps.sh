#!/bin/sh
# install-deps.sh: install the Debian 12 packages simtune needs. Idempotent: packages already
# present are left alone, and nothing is fetched when all are there. Needs root (sudo otherwise).
#
#   tools/install-deps.sh           what building and running simtune needs (the quick start)
#   tools/install-deps.sh --tests   that plus the test and benchmark extras: the PyTorch,
#                                   torchvision, h5py and FAISS oracles, sanitizer runtimes,
#                                   valgrind, headless Chromium + selenium for the serve page
#                                   test (about 1 GB more, plus Chromium)
#
# The CUDA toolkit, cuDNN and cuBLAS are not Debian packages; the build uses them when present.
# Open MPI: mpirun for multi-process runs (docs/scaling.md); simtune loads libmpi only when
# launched by it, so a single process runs without it.
set -eu
MAIN="build-essential cmake pkg-config libopenblas-dev liblapacke-dev libdnnl-dev libhdf5-dev
  libpng-dev libjpeg62-turbo-dev libyaml-dev libcairo2-dev libjansson-dev openmpi-bin libopenmpi-dev
  libmicrohttpd-dev"
TESTS="hdf5-tools python3 python3-numpy python3-h5py python3-torch python3-torchvision
  python3-faiss python3-yaml python3-pil clang libclang-rt-14-dev valgrind
  chromium chromium-driver python3-selenium"
case "${1:-}" in
  "") PACKAGES="$MAIN" ;;
  --tests) PACKAGES="$MAIN $TESTS" ;;
  *) echo "usage: tools/install-deps.sh [--tests]" >&2; exit 2 ;;
esac
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
