#!/usr/bin/env python3
"""test_divergence.py: divergence never poisons checkpoints (issue 13 item 7), through `simtune train`.

Data: full_disk_data/ (6 generated classes x 8 images of 40x40, the full_disk_data fixture).
Model: tv_resnet18 at 32x32 frozen to conv4_block2_out, 6 steps an epoch. Wall time about 40 s
on 2 idle cores.

  1. Exploding loss: phase warm (lr 0.001, 1 epoch) then phase boom (lr 100). With the default
     divergence_factor the first boom step whose loss is over 1000x the reference loss stops the
     run: exit 1, the message says "diverged", "divergence_factor" and the step number; only the
     epoch-1 checkpoint exists. Without the check (--set divergence_factor=0) the same run goes
     on (its epoch-2 mean loss is ~5e14) until the loss is NaN, at a later step: exit 1,
     "diverged" and the step.
  2. Every checkpoint the non-finite run kept (ckpt-*.h5, best.h5) holds only finite floats,
     parameters and optimizer state (h5py).
  3. --resume falls back: a finished 3-epoch run gets its newest checkpoint corrupted (bytes
     flipped) and the one before given an inf BN moving variance (h5py); `simtune train
     --resume` warns about both, says it resumed from ckpt-6.h5, and finishes (metrics epochs
     1, 2, 3). With the last one corrupted too, it fails with exit 1 naming the run folder.
  4. best.h5 is read back when written: on a disk that corrupts what is read from best.h5.tmp
     (tests/enospc_shim.c, argv[1], SIMTUNE_TEST_CORRUPT_READS) a 1-epoch run exits 1 with
     "best.h5: not replaced ... checksum mismatch"; no best.h5 or best.h5.tmp appears and
     ckpt-6.h5 stays.
Exit 0 on success, 1 on the first failure (with the reason), 77 without SIMTUNE_BIN or argv[1].
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import testlib
from testlib import BIN, check

SHIM = os.path.abspath(testlib.inputs(["SHIM"], status=77)[0])  # tests/enospc_shim.c, built

BASE = """model: {arch: tv_resnet18, image_size: 32}
data:
  train: [{path: full_disk_data, name: synth}]
  val_fraction: 0.25
  batch_size: 6
  workers: 2
loss: {type: cross_entropy}
optimizer: {type: sgd, lr: 0.005}
schedule: {type: constant}
freeze_until: conv4_block2_out
seed: 4
device: cpu
threads: 2
output: {dir: div_runs, keep_last: 0}
"""
PHASES = """phases:
  - {name: warm, epochs: 1, optimizer: {lr: 0.001}}
  - {name: boom, epochs: 5, optimizer: {lr: 100}}
"""


def run(args, env=None):
    return subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, **(env or {})))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def checkpoints(run_dir):
    return sorted((f for f in os.listdir(run_dir) if re.fullmatch(r"ckpt-\d+\.h5", f)),
                  key=lambda f: int(f[5:-3]))


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def h5py_or_none():
    try:
        import h5py
        import numpy
        return h5py, numpy
    except ImportError:
        check(os.environ.get("SIMTUNE_REQUIRE_ORACLES") != "1", "h5py/numpy missing under SIMTUNE_REQUIRE_ORACLES=1")
        print("h5py missing: the finiteness and inf-injection checks are skipped")
        return None, None


def non_finite_datasets(path, h5py, np):
    bad = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and not np.isfinite(obj[()]).all():
            bad.append(name)
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return bad


def test_exploding_and_non_finite():
    write("div_boom.yaml", BASE + PHASES)
    r = run(["train", "--config", "div_boom.yaml", "--name", "boom"])
    check(r.returncode == 1, f"exploding loss: exit {r.returncode}, want 1; {r.stderr[-400:]!r}")
    m = re.search(r"at step (\d+) .*divergence_factor.*diverged", r.stderr)
    check(m is not None, f"exploding loss: the message must name the step, divergence_factor, 'diverged': {r.stderr!r}")
    stopped_at = int(m.group(1)) if m else 0
    check(6 < stopped_at <= 12, f"exploding loss: stopped at step {stopped_at}, want within phase boom's first epoch")
    check(checkpoints("div_runs/boom") == ["ckpt-6.h5"], f"exploding loss: checkpoints {checkpoints('div_runs/boom')}")

    r = run(["train", "--config", "div_boom.yaml", "--name", "nonfinite", "--set", "divergence_factor=0"])
    check(r.returncode == 1 and "diverged" in r.stderr and re.search(r"at step (\d+)", r.stderr),
          f"non-finite loss: exit {r.returncode}, stderr {r.stderr[-400:]!r}")
    m = re.search(r"at step (\d+)", r.stderr)
    check(m is not None and int(m.group(1)) > stopped_at,
          f"divergence_factor=0 must stop later (on the non-finite loss) than the default did at {stopped_at}")
    h5py, np = h5py_or_none()
    if h5py:
        kept = checkpoints("div_runs/nonfinite") + ["best.h5"]
        for c in kept:
            bad = non_finite_datasets(os.path.join("div_runs/nonfinite", c), h5py, np)
            check(bad == [], f"non-finite loss: {c} holds non-finite values in {bad[:3]}")


def flip_bytes(path):
    """Overwrite 64 bytes in the middle of the file (inside the parameter data)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        chunk = f.read(64)
        f.seek(size // 2)
        f.write(bytes(b ^ 0x5A for b in chunk))


def set_inf_moving_variance(path, h5py):
    with h5py.File(path, "r+") as f:
        names = []
        f["model_weights"].visit(lambda n: names.append(n) if n.endswith("moving_variance:0") else None)
        f["model_weights"][names[0]][0] = float("inf")


def test_resume_fallback():
    write("div_fallback.yaml", BASE + "epochs: 3\n")
    r = run(["train", "--config", "div_fallback.yaml", "--name", "fallback"])
    if not check(r.returncode == 0, f"fallback: the 3-epoch run failed: {r.stderr[-400:]!r}"):
        return
    run_dir = "div_runs/fallback"
    check(checkpoints(run_dir) == ["ckpt-6.h5", "ckpt-12.h5", "ckpt-18.h5"], f"fallback: {checkpoints(run_dir)}")
    flip_bytes(os.path.join(run_dir, "ckpt-18.h5"))
    h5py, _ = h5py_or_none()
    if h5py:
        set_inf_moving_variance(os.path.join(run_dir, "ckpt-12.h5"), h5py)
    else:
        flip_bytes(os.path.join(run_dir, "ckpt-12.h5"))
    r = run(["train", "--resume", run_dir])
    check(r.returncode == 0, f"fallback: --resume exit {r.returncode}: {r.stderr[-400:]!r}")
    for bad in ("ckpt-18.h5", "ckpt-12.h5"):
        check(re.search(rf"warning: cannot resume from \S*{bad}: ", r.stdout) is not None,
              f"fallback: no warning about {bad}: {r.stdout[:1200]!r}")
    if h5py:
        check(re.search(r"ckpt-12\.h5: .*moving_variance.* inf", r.stdout) is not None,
              "fallback: the warning about ckpt-12.h5 must name the non-finite moving variance")
    check(re.search(rf"resumed from {re.escape(run_dir)}/ckpt-6\.h5", r.stdout) is not None,
          f"fallback: did not resume from ckpt-6.h5: {r.stdout[:1200]!r}")
    check([row["epoch"] for row in metrics(run_dir)] == [1, 2, 3], "fallback: metrics epochs after resuming")
    for c in checkpoints(run_dir):
        flip_bytes(os.path.join(run_dir, c))
    r = run(["train", "--resume", run_dir])
    check(r.returncode == 1 and run_dir in r.stderr and "none of its 3 checkpoints" in r.stderr,
          f"fallback: every checkpoint corrupt: exit {r.returncode}, stderr {r.stderr!r}")


def test_best_verified():
    write("div_verify.yaml", BASE + "epochs: 1\n")
    r = run(["train", "--config", "div_verify.yaml", "--name", "verify"],
            env={"LD_PRELOAD": SHIM, "SIMTUNE_TEST_CORRUPT_READS": "best.h5.tmp",
                 # a SIMTUNE_SANITIZE build: ASan must accept a library loaded before it
                 "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"})
    check(r.returncode == 1 and "best.h5: not replaced" in r.stderr and "checksum mismatch" in r.stderr,
          f"best.h5 read-back: exit {r.returncode}, stderr {r.stderr[-500:]!r}")
    files = sorted(os.listdir("div_runs/verify"))
    check("ckpt-6.h5" in files and "best.h5" not in files and "best.h5.tmp" not in files,
          f"best.h5 read-back: files {files}")


def main():
    shutil.rmtree("div_runs", ignore_errors=True)
    t0 = time.time()
    test_exploding_and_non_finite()
    test_resume_fallback()
    test_best_verified()
    sys.exit(testlib.finish("test_divergence", note=f"{time.time() - t0:.1f} s"))


if __name__ == "__main__":
    main()
