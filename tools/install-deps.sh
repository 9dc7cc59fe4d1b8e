#!/bin/sh
# install-deps.sh: install the Debian 12 packages simtune builds, tests and benchmarks with.
# Idempotent: packages already present are left alone. Needs root (uses sudo when not root).
set -eu
PACKAGES="build-essential cmake pkg-config
  libopenblas-dev libdnnl-dev libhdf5-dev hdf5-tools libpng-dev libjpeg62-turbo-dev libyaml-dev libcairo2-dev
  python3 python3-numpy python3-h5py python3-torch python3-torchvision python3-faiss python3-yaml
  clang libclang-rt-14-dev valgrind"
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
