"""mpi_failures.py: a rank that hangs or dies during `mpirun -np 2 simtune train` ends the job with
a message naming a rank, and the checkpoints rank 0 wrote stay usable (kernels/comm.h watchdog,
train/checkpoint.h atomic writes; docs/scaling.md "Failures").

  hang   once epoch 1 is logged, rank 1 is stopped (SIGSTOP): with SIMTUNE_COMM_TIMEOUT=10 rank 0's
         watchdog ends the job within the timeout plus a margin (60 s allowed for a loaded
         machine), saying `rank 0 of 2: waited 10 s in <collective>`; then one process resumes the
         run from its newest checkpoint and trains one more epoch. (10 s, not less: rank 1 waits
         in a collective while rank 0 writes a checkpoint, seconds on a loaded machine.)
  dies   rank 1 is killed (SIGKILL): mpirun ends the job naming `rank 1` and signal 9; the run
         resumes the same way
  stop   both ranks get SIGTERM (as Slurm sends at a time limit) during epoch 2 (or between
         epochs, on a loaded machine): they stop after the same step, rank 0 writes the checkpoint
         of that step, and every rank waits for it in MPI_Finalize, so the job exits 130 with
         `stopped: resume with ...` printed once; the run resumes the same way
Data: make_synthetic, 6 classes x 8 images of 40x40; tv_resnet18 at 32 px, triplet head.
Usage (ctest): mpi_failures.py MAKE_SYNTHETIC
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import testlib
from testlib import BIN, check

MPIRUN = shutil.which("mpirun")

CONFIG = """model: {arch: tv_resnet18, image_size: 32, embed_dim: 16}
data:
  train: [{path: fail_data, name: synth}]
  val_fraction: 0
  sampler: pk
  pk: {p: 3, k: 2}
  workers: 1
loss: {type: triplet}
optimizer: {type: sgd, lr: 0.001}
schedule: {type: constant}
freeze_until: all
epochs: 400
device: cpu
threads: 1
output: {dir: fail_runs, keep_last: 2}
"""


def epochs_logged(name):
    try:
        with open(os.path.join("fail_runs", name, "metrics.jsonl")) as f:
            return [json.loads(line)["epoch"] for line in f if line.endswith("\n")]
    except (OSError, ValueError):
        return []


def rank_pid(rank, name):
    """pid of the simtune process of `rank` training run `name` (its environment says the rank)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if cmd[0].endswith(b"simtune") and name.encode() in cmd and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            return int(pid)
    return None


def start(name, timeout="600"):
    env = dict(os.environ, SIMTUNE_COMM_TIMEOUT=timeout)
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-x", "SIMTUNE_COMM_TIMEOUT",
           "-np", "2", BIN, "train", "--config", "fail.yaml", "--name", name]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not epochs_logged(name) and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    return p


def ended(p, what):
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        check(False, f"{what}: the job still ran 60 s later")
    return out + err


def resumes(name, what):
    done = max(epochs_logged(name), default=0)
    r = subprocess.run([BIN, "train", "--resume", f"fail_runs/{name}", "--epochs", str(done + 1)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    check(r.returncode == 0 and "resumed from" in r.stdout and max(epochs_logged(name), default=0) == done + 1,
          f"{what}: resuming after the failure: exit {r.returncode}: {r.stdout[-300:]} {r.stderr[-300:]}")


def test_hang():
    p = start("hang", timeout="10")
    pid = rank_pid(1, "hang")
    if not check(epochs_logged("hang") and pid, "hang: no epoch logged or rank 1 not found"):
        p.kill()
        return
    os.kill(pid, signal.SIGSTOP)
    err = ended(p, "hang")
    try:
        os.kill(pid, signal.SIGKILL)  # mpirun's SIGTERM does not end a stopped process
    except ProcessLookupError:
        pass
    check(p.returncode != 0 and "rank 0 of 2: waited 10 s in" in err and "died or hangs" in err,
          f"hang: exit {p.returncode}, stderr {err[-600:]!r}")
    resumes("hang", "hang")


def test_dies():
    p = start("dies")
    pid = rank_pid(1, "dies")
    if not check(epochs_logged("dies") and pid, "dies: no epoch logged or rank 1 not found"):
        p.kill()
        return
    os.kill(pid, signal.SIGKILL)
    err = ended(p, "dies")
    check(p.returncode != 0 and "rank 1" in err and "signal 9" in err, f"dies: exit {p.returncode}, {err[-600:]!r}")
    resumes("dies", "dies")


def test_stop():
    p = start("stop")
    pids = [rank_pid(r, "stop") for r in (0, 1)]
    if not check(epochs_logged("stop") and all(pids), "stop: no epoch logged or a rank not found"):
        p.kill()
        return
    time.sleep(1.5)  # into epoch 2 (or at its start: a stop between epochs is as valid)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    out = ended(p, "stop")
    ckpts = sorted(int(f[5:-3]) for f in os.listdir("fail_runs/stop") if f.startswith("ckpt-") and f.endswith(".h5"))
    saved = re.search(r"interrupted: saving a checkpoint at step (\d+)", out)  # absent: stopped between epochs
    check(p.returncode == 130 and out.count("stopped: resume with") == 1 and ckpts and ckpts[-1] >= 6
          and (not saved or int(saved.group(1)) in ckpts),
          f"stop: exit {p.returncode}, checkpoints at steps {ckpts}, output {out[-600:]!r}")
    resumes("stop", "stop")


def main():
    (make_synthetic,) = testlib.inputs(["MAKE_SYNTHETIC"])
    if not MPIRUN:
        testlib.missing_oracle("mpi_failures", "mpirun (openmpi-bin) is not installed")
    shutil.rmtree("fail_runs", ignore_errors=True)
    if subprocess.run([make_synthetic, "fail_data", "6", "8", "40", "40", "31", "0", "0"]).returncode != 0:
        check(False, "make_synthetic failed")
        return testlib.finish("mpi_failures")
    with open("fail.yaml", "w") as f:
        f.write(CONFIG)
    test_hang()
    test_dies()
    test_stop()
    return testlib.finish("mpi_failures", work=["fail_runs", "fail_data"])


if __name__ == "__main__":
    sys.exit(main())
