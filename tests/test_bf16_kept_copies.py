#!/usr/bin/env python3
"""test_bf16_kept_copies.py: bf16 training reuses no stale copy of an activation, through `simtune train`.

In bf16 a trainable convolution's backward rounds dy once for both backward passes
(kernels/cpu/conv.c, conv_backward), and every convolution keeps its kernel's bf16 copy until the
kernel changes. A copy that outlived the step it belongs to would silently train the next step on
the previous batch's gradients or weights. The same data, config and seed, tv_resnet18 at 32 px, every layer
trainable, `precision: bf16`, batch 6, 6 steps an epoch:

  straight  2 epochs in one process: epoch 2's steps run on buffers that epoch 1's steps (and
            its validation forwards) filled;
  split     1 epoch, then `--resume` in a fresh process for epoch 2: nothing survives but the
            checkpoint (resume is bit-exact: parameters, optimizer state, RNG, data order).
Both must end BIT FOR BIT equal (h5diff without tolerance on the step-12 checkpoint's weights
and optimizer state; the logged train losses equal as printed): a copy reused from an earlier
step in the straight run would make them differ. The weights must have moved in epoch 2 (else
the comparison proves nothing) and the runs must have run in bf16 (no fallback warning).
Data: make_synthetic (argv[1]) 6 classes x 8 images of 40x40. About 35 s on 2 loaded cores.
Exit 0 on success, 1 on failures, 77 where the CPU has no bf16 (training falls back to fp32).
"""
import json
import os
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, check

MAKE_SYNTHETIC = testlib.inputs(["MAKE_SYNTHETIC"])[0]
WORK = "bf16_kept_copies"

CONFIG = """model: {arch: tv_resnet18, image_size: 32, precision: bf16}
data:
  train: [{path: data, name: synth}]
  val_fraction: 0.25
  batch_size: 6
  workers: 2
loss: {type: cross_entropy}
optimizer: {type: sgd, lr: 0.01, momentum: 0.9}
schedule: {type: constant}
epochs: 2
seed: 4
device: cpu
threads: 2
output: {dir: runs, keep_last: 0}
"""


def run(args):
    return subprocess.run([BIN] + args, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)


def train(args, what):
    r = run(["train"] + args)
    check(r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr[-600:]!r}")
    return r


def losses(name):
    with open(os.path.join(WORK, "runs", name, "metrics.jsonl")) as f:
        return [json.loads(line)["train/loss"] for line in f]


def h5diff(one, two, group):
    """Exit status of h5diff comparing `group` of two files exactly: 0 equal, 1 different."""
    return subprocess.run(["h5diff", os.path.join(WORK, one), os.path.join(WORK, two), group, group],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    subprocess.run([os.path.abspath(MAKE_SYNTHETIC), "data", "6", "8", "40", "40", "17", "0", "0"],
                   cwd=WORK, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(WORK, "c.yaml"), "w") as f:
        f.write(CONFIG)
    r = train(["--config", "c.yaml", "--name", "straight"], "straight run")
    if "computing in fp32" in r.stdout + r.stderr:
        shutil.rmtree(WORK, ignore_errors=True)
        print("test_bf16_kept_copies: no AVX512_BF16 here, bf16 fell back to fp32: nothing to test")
        return 77
    train(["--config", "c.yaml", "--name", "split", "--epochs", "1"], "split run, epoch 1")
    r = train(["--resume", "runs/split"], "split run resumed for epoch 2")
    check("resumed from" in r.stdout, f"the split run did not resume: {r.stdout[-600:]!r}")
    if testlib.FAILURES:
        return testlib.finish("test_bf16_kept_copies", [WORK])

    straight, split = "runs/straight/ckpt-12.h5", "runs/split/ckpt-12.h5"
    check(h5diff("runs/straight/ckpt-6.h5", straight, "/model_weights") == 1,
          "epoch 2 left the weights unchanged: the comparison would prove nothing")
    for group in ("/model_weights", "/state"):
        check(h5diff(straight, split, group) == 0,
              f"{group} after epoch 2 differs between one process and a resumed one: a bf16 copy "
              "of an earlier step's activations was reused")
    check(losses("straight") == losses("split"),
          f"train losses differ: {losses('straight')} vs {losses('split')}")
    return testlib.finish("test_bf16_kept_copies", [WORK])


if __name__ == "__main__":
    sys.exit(main())
