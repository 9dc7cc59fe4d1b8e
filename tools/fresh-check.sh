#!/bin/sh
# fresh-check.sh: proves README's quick start on a pristine Debian 12. Makes a root with
# `mmdebstrap --variant=apt bookworm` from this machine's own apt sources (no mirror is named
# here), clones this repository into it and copies ../shared beside the clone, then runs
# README's two commands inside (chroot, with /proc, /sys and /dev bound), as written:
#
#   tools/quickstart.sh     installs what the main job needs, builds, runs `simtune demo`
#   tools/test.sh           installs the test extras, builds, runs every test
#
# Prints one line per command with its exit status and time; exits 1 if either failed. Needs
# root (chroot, mounts) and the network to the Debian archive. The mounts are undone on every
# exit path. Logs: $FRESH_LOGS (default: build-fresh/ in this checkout); the root is removed
# at the end unless FRESH_KEEP=1. Takes about 20 minutes on 2 cores.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
SHARED="$SRC/../shared"
LOGS=${FRESH_LOGS:-$SRC/build-fresh}
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: needs root (chroot and mounts)" >&2; exit 2; }
[ -d "$SHARED" ] || { echo "fresh-check: $SHARED: not found (shared/ must sit beside the repository)" >&2; exit 2; }
command -v mmdebstrap >/dev/null || {
  echo "fresh-check: installing mmdebstrap on this machine (not in the pristine root)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
}

ROOT=$(mktemp -d /var/tmp/simtune-fresh.XXXXXX)
MOUNTS=""
cleanup() {
  for m in $MOUNTS; do umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null || true; done
  MOUNTS=""
  [ "${FRESH_KEEP:-0}" = 1 ] && echo "fresh-check: root kept at $ROOT" || rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

sources=""
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && sources="$sources $f"
done
[ -n "$sources" ] || { echo "fresh-check: this machine has no apt sources to copy" >&2; exit 2; }
mkdir -p "$LOGS"
echo "fresh-check: making a pristine bookworm root in $ROOT from$sources"
mmdebstrap --variant=apt --quiet bookworm "$ROOT" $sources >"$LOGS/mmdebstrap.log" 2>&1 || {
  tail -20 "$LOGS/mmdebstrap.log"; echo "fresh-check: mmdebstrap: exit 1"; exit 1; }
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"   # the host's network, not a package
# /etc/hosts belongs to no package: the Debian installer (and every container runtime) writes it,
# mmdebstrap does not. Without it "localhost" does not resolve (selenium reaches chromedriver by
# that name), so write the installer's two lines.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
mkdir -p "$ROOT/work"
git clone -q "$SRC" "$ROOT/work/simtune"
cp -r "$SHARED" "$ROOT/work/shared"

mount -t proc proc "$ROOT/proc" && MOUNTS="$ROOT/proc $MOUNTS"
mount --rbind /sys "$ROOT/sys" && MOUNTS="$ROOT/sys $MOUNTS"
mount --rbind /dev "$ROOT/dev" && MOUNTS="$ROOT/dev $MOUNTS"

status=0
run_inside() { # run_inside COMMAND: README's command in the clone, a clean environment
  name=$(echo "$1" | tr '/ ' '__')
  start=$(date +%s)
  set +e
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    SIMTUNE_REQUIRE_ORACLES=1 ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} \
    ${OPENBLAS_L2_SIZE:+OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE} \
    /bin/sh -c "cd /work/simtune && $1" >"$LOGS/$name.log" 2>&1
  rc=$?
  set -e
  echo "fresh-check: $1: exit $rc ($(( $(date +%s) - start )) s, log $LOGS/$name.log)"
  if [ "$rc" -ne 0 ]; then
    tail -30 "$LOGS/$name.log"
    status=1
  fi
}
run_inside tools/quickstart.sh
run_inside tools/test.sh
exit $status
