"""sweep_locks.py: run folders and sweep folders are locked while in use (train/lock.h), through
the CLI as a user meets it.

    sweep_locks.py MAKE_SYNTHETIC      (env SIMTUNE_BIN: the simtune binary; ctest sets it)

For `simtune train` and `simtune sweep`: process A starts, and is frozen with SIGSTOP as soon
as its folder's .lock appears (so it holds the lock for as long as the test needs, on any
machine speed); then
  - a second process on the same folder (`train --resume RUN`, `sweep --resume DIR`, and a new
    start with the same name / dir) exits 1 naming A's pid and host, and changes nothing;
  - A is killed with SIGKILL (its .lock stays behind: a stale lock of a dead pid); the next
    `--resume` takes the lock over with a note naming the dead pid, finishes, and removes it.
Trains tv_resnet18 at 32 px on a generated 6-class dataset: a few seconds in all.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import testlib
from testlib import BIN, check

MAKE_SYNTHETIC, = testlib.inputs(["MAKE_SYNTHETIC"])
WORK = os.path.abspath("sweep_locks_work")
HOST = socket.gethostname()

BASE_YAML = """\
model: {arch: tv_resnet18, weights: null, image_size: 32, pool: avg, embed_dim: 16}
data:
  train: [{path: data, name: synth}]
  val_fraction: 0.3
  sampler: pk
  pk: {p: 3, k: 4}
  workers: 1
loss: {type: triplet}
optimizer: {type: adam, lr: 1.0e-3}
epochs: 2
seed: 0
device: cpu
threads: 1
validation: {every: 1, metrics: [map@10]}
output: {dir: runs, name: base, keep_last: 1, save_best: false}
"""

SWEEP_YAML = """\
base: base.yaml
dir: out/sweep
hyperband: {max_resource: 1}
parameters:
  optimizer.lr: {values: [1.0e-3]}
"""


def run(args, timeout=300):
    p = subprocess.run([BIN, *args], cwd=WORK, capture_output=True, text=True, timeout=timeout)
    print(f"simtune {' '.join(args)}: exit {p.returncode}", flush=True)
    return p


def start_and_freeze(args, folder, also=None):
    """Start simtune ARGS, wait until FOLDER/.lock (and ALSO) exist, SIGSTOP it; the Popen."""
    proc = subprocess.Popen([BIN, *args], cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = os.path.join(WORK, folder, ".lock")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(lock) and (also is None or os.path.exists(os.path.join(WORK, also))):
            proc.send_signal(signal.SIGSTOP)
            return proc
        time.sleep(0.005)
    check(False, f"simtune {' '.join(args)} never locked {folder} (exit {proc.poll()}): {proc.stderr.read()[-2000:]}")
    proc.kill()
    proc.wait()
    return None


def kill(proc):
    proc.kill()  # SIGKILL: no release, the lock file stays
    proc.wait()
    proc.stderr.close()


def snapshot(folder):
    """(name, size, mtime) of every file under folder: a refused process must change none."""
    out = []
    for root, _, files in os.walk(os.path.join(WORK, folder)):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out.append((os.path.relpath(os.path.join(root, name), WORK), st.st_size, st.st_mtime_ns))
    return sorted(out)


def check_refused(p, folder, holder, what):
    want = f"{folder} is in use by pid {holder} on host {HOST} since "
    check(p.returncode == 1 and want in p.stderr, f"{what}: exit {p.returncode}, stderr {p.stderr.strip()!r}; want {want!r}")


def check_takeover(p, folder, dead, what):
    note = f"{folder}: taking over a stale lock: pid {dead} "
    check(p.returncode == 0, f"{what}: exit {p.returncode}: {p.stderr[-2000:]}")
    check(note in p.stderr, f"{what}: no note {note!r} on stderr: {p.stderr[-1000:]!r}")
    check(not os.path.exists(os.path.join(WORK, folder, ".lock")), f"{what}: .lock left after a clean exit")


def test_train():
    a = start_and_freeze(["train", "--config", "base.yaml", "--name", "same"], "runs/same", also="runs/same/config.yaml")
    if not a:
        return
    before = snapshot("runs/same")
    check_refused(run(["train", "--resume", "runs/same"]), "runs/same", a.pid, "train --resume of a run in use")
    p = run(["train", "--config", "base.yaml", "--name", "same"])
    # the same name again: refused by the lock, or by the earlier run's files when A got as far
    # as its first metrics line before it was frozen
    check(p.returncode == 1 and ("in use by pid" in p.stderr or "already exists" in p.stderr),
          f"train with the name of a run in use: exit {p.returncode}: {p.stderr.strip()!r}")
    check(snapshot("runs/same") == before, "a refused train changed the run folder")
    kill(a)
    check(os.path.exists(os.path.join(WORK, "runs/same/.lock")), "a killed train leaves its .lock (stale)")
    check_takeover(run(["train", "--resume", "runs/same"]), "runs/same", a.pid, "train --resume after kill -9")
    check(os.path.exists(os.path.join(WORK, "runs/same/best_weights.h5")), "the resumed run finished")


def test_sweep():
    a = start_and_freeze(["sweep", "--config", "sweep.yaml"], "out/sweep", also="out/sweep/sweep.yaml")
    if not a:
        return
    before = snapshot("out/sweep")
    check_refused(run(["sweep", "--resume", "out/sweep"]), "out/sweep", a.pid, "sweep --resume of a sweep in use")
    check_refused(run(["sweep", "--config", "sweep.yaml"]), "out/sweep", a.pid, "sweep --config into a sweep in use")
    check(snapshot("out/sweep") == before, "a refused sweep changed the sweep folder")
    kill(a)
    p = run(["sweep", "--resume", "out/sweep"])
    check_takeover(p, "out/sweep", a.pid, "sweep --resume after kill -9")
    check("sweep finished" in p.stdout, "the resumed sweep finished")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    p = subprocess.run([MAKE_SYNTHETIC, os.path.join(WORK, "data"), "6", "12", "40", "40", "0", "0", "0"],
                       capture_output=True, text=True, timeout=120)
    if not check(p.returncode == 0, f"make_synthetic: {p.stderr}"):
        return 1
    for name, text in (("base.yaml", BASE_YAML), ("sweep.yaml", SWEEP_YAML)):
        with open(os.path.join(WORK, name), "w") as f:
            f.write(text)
    test_train()
    test_sweep()
    return testlib.finish("sweep_locks", [WORK])


if __name__ == "__main__":
    sys.exit(main())
