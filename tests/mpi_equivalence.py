"""mpi_equivalence.py: data-parallel `simtune train` under `mpirun -np 2` (kernels/comm.h,
train/trainer.c) against one process with the same global batch, on a generated dataset
(make_synthetic, 6 classes x 8 images of 40x40), tv_resnet18 at 32 px, 1 thread per rank.

  cross-entropy     every logged loss (train/loss, val/loss per epoch), train/accuracy and the
                    final weights agree
  batch-hard triplet  the same with the embedding head (mining over the all-gathered batch)
  --resume, other N   2 ranks for 2 epochs, resumed by 1 process for the 3rd: the straight
                    1-process run's weights
  sync_bn           with conv5_block2 training (batch norm in training mode) and lr 1e-7 (the
                    weights stay put), the running mean of its first batch norm, whose input is
                    the same frozen features in every run: with sync_bn: true the 2-rank run's
                    equals the 1-process run's (averaging per-rank momentum updates of equal
                    slices is the global batch's update: observed within 3e-6, tolerance 1e-4);
                    without it rank 0's holds its own slice's statistics (observed 0.02-0.06 off)
  bad input         a rank count that does not divide the global batch is refused with the
                    numbers; ranks with different configs are refused naming the rank

Why freeze_until: all: a batch norm that trains normalises with its rank's batch statistics (as
PyTorch DDP without SyncBatchNorm), which are not the global batch's, so only runs whose trained
layers have no batch norm in training mode are expected to be the same computation; the head
(dense classifier, dense embedding + L2 norm) trains and the losses, the mining and the gradient
all-reduce are exercised. Augmentation is on: each image keeps its global sample key.

Tolerances: the two runs add the same float32 terms in another order (a GEMM over 3 rows on each
rank plus one all-reduce against a GEMM over 6 rows), about 1e-7 relative per step, amplified by
18 SGD steps to the 1e-6 relative seen on the losses; rtol 1e-4 on losses and atol 1e-5 on the
weights (values of order 0.1) keep a 50x margin while a wrong slice, a missing all-reduce or a
gradient scaled by 1/N moves the losses after the first step by whole percents.
Usage (ctest): mpi_equivalence.py MAKE_SYNTHETIC
"""
import json
import os
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, check

MPIRUN = shutil.which("mpirun")
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]

BASE = """model: {{arch: tv_resnet18, image_size: 32{embed}}}
data:
  train: [{{path: mpi_data, name: synth}}]
  val_fraction: 0.25
{sampler}
  augment: {{random_resized_crop: true, scale: [0.5, 1], flip: true}}
  workers: 1
loss: {loss}
optimizer: {{type: sgd, lr: 0.002, momentum: 0.9}}
schedule: {{type: cosine}}
freeze_until: all
epochs: 3
seed: 4
device: cpu
threads: 1
output: {{dir: mpi_runs, keep_last: 0}}
"""
XENT = BASE.format(embed="", sampler="  batch_size: 6", loss="{type: cross_entropy, label_smoothing: 0.1}")
TRIPLET = BASE.format(embed=", embed_dim: 16", sampler="  sampler: pk\n  pk: {p: 3, k: 2}",
                      loss="{type: triplet, triplet: {mining: batch_hard, margin: 0.2}}")


def run(args, ranks=1):
    cmd = ([MPIRUN] + MPI_FLAGS + ["-np", str(ranks)] if ranks > 1 else []) + [BIN] + args
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


def metrics(name):
    with open(os.path.join("mpi_runs", name, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def close(a, b, rtol):
    return a is not None and b is not None and abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


def same_logs(one, two, what):
    check(len(one) == len(two) == 3, f"{what}: {len(one)} and {len(two)} epochs logged, 3 expected")
    keys = [k for k in one[0] if k.startswith(("train/", "val/"))]
    for a, b in zip(one, two):
        for k in keys:
            check(close(a.get(k), b.get(k), 1e-4), f"{what}: epoch {a['epoch']} {k}: {a.get(k)} vs {b.get(k)}")
        check(a["step"] == b["step"], f"{what}: epoch {a['epoch']}: step {a['step']} vs {b['step']}")


def same_weights(one, two, what):
    # h5diff -d: every dataset of both files (same names, shapes) within the absolute tolerance
    r = subprocess.run(["h5diff", "-d", "1e-5", os.path.join("mpi_runs", one, "best_weights.h5"),
                        os.path.join("mpi_runs", two, "best_weights.h5")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(r.returncode == 0, f"{what}: final weights differ: {r.stdout[-800:]}")


def test_equivalence(config, name):
    with open(f"{name}.yaml", "w") as f:
        f.write(config)
    r1 = run(["train", "--config", f"{name}.yaml", "--name", f"{name}1"])
    r2 = run(["train", "--config", f"{name}.yaml", "--name", f"{name}2"], ranks=2)
    if not check(r1.returncode == 0 and r2.returncode == 0,
                 f"{name}: exit {r1.returncode} / {r2.returncode}: {r1.stderr[-600:]} {r2.stderr[-600:]}"):
        return
    one, two = metrics(f"{name}1"), metrics(f"{name}2")
    same_logs(one, two, name)
    check(one[-1]["train/loss"] != one[0]["train/loss"], f"{name}: the loss did not move: nothing trained")
    same_weights(f"{name}1", f"{name}2", name)
    check(r2.stdout.count("done:") == 1, f"{name}: 2 ranks printed {r2.stdout.count('done:')} summaries, want 1")


def test_resume_other_rank_count():
    r = run(["train", "--config", "triplet.yaml", "--name", "resumed", "--epochs", "2"], ranks=2)
    check(r.returncode == 0, f"2-rank run of 2 epochs: exit {r.returncode}: {r.stderr[-600:]}")
    r = run(["train", "--resume", "mpi_runs/resumed"])
    check(r.returncode == 0 and "resumed from" in r.stdout, f"1-process resume: exit {r.returncode}: {r.stderr[-600:]}")
    same_logs(metrics("triplet1"), metrics("resumed"), "resume with another N")
    same_weights("triplet1", "resumed", "resume with another N")


def test_sync_bn():
    text = TRIPLET.replace("freeze_until: all", "freeze_until: conv5_block1_out").replace("lr: 0.002", "lr: 1.0e-7")
    with open("sync_bn.yaml", "w") as f:
        f.write(text.replace("epochs: 3", "epochs: 1").replace("val_fraction: 0.25", "val_fraction: 0"))
    runs = {"bn1": (1, []), "bn_sync": (2, ["--set", "sync_bn=true"]), "bn_local": (2, [])}
    for name, (ranks, extra) in runs.items():
        r = run(["train", "--config", "sync_bn.yaml", "--name", name] + extra, ranks=ranks)
        if not check(r.returncode == 0, f"sync_bn run {name}: exit {r.returncode}: {r.stderr[-600:]}"):
            return
    stat = "/conv5_block2_1_bn/conv5_block2_1_bn/moving_mean:0"
    same = {}
    for name in ("bn_sync", "bn_local"):
        r = subprocess.run(["h5diff", "-d", "1e-4", "mpi_runs/bn1/best_weights.h5", f"mpi_runs/{name}/best_weights.h5",
                            stat, stat], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        same[name] = r.returncode == 0
    check(same["bn_sync"], "sync_bn: true: the running mean differs from one process's")
    check(not same["bn_local"], "without sync_bn the running mean equals one process's: the test cannot tell")


def test_bad_input():
    r = run(["train", "--config", "triplet.yaml", "--name", "three"], ranks=4)
    check(r.returncode != 0 and "global batch of 6 images (data.pk.p 3 x data.pk.k 2) cannot be split evenly "
          "across 4 ranks (6 % 4 = 2)" in r.stderr, f"4 ranks for a batch of 6: exit {r.returncode}: {r.stderr[-600:]}")
    check(not os.path.exists("mpi_runs/three/metrics.jsonl"), "the refused run trained")
    args = ["train", "--config", "xent.yaml", "--name", "mixed"]
    cmd = [MPIRUN] + MPI_FLAGS + ["-np", "1", BIN] + args + [":", "-np", "1", BIN] + args + ["--set", "optimizer.lr=0.02"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    check(r.returncode != 0 and "rank 1 has another config than rank 0" in r.stderr,
          f"ranks with different configs: exit {r.returncode}: {r.stderr[-600:]}")


def main():
    (make_synthetic,) = testlib.inputs(["MAKE_SYNTHETIC"])
    if not MPIRUN or not shutil.which("h5diff"):
        testlib.missing_oracle("mpi_equivalence", "mpirun (openmpi-bin) or h5diff (hdf5-tools) is not installed")
    shutil.rmtree("mpi_runs", ignore_errors=True)
    if subprocess.run([make_synthetic, "mpi_data", "6", "8", "40", "40", "17", "0", "0"]).returncode != 0:
        check(False, "make_synthetic failed")
        return testlib.finish("mpi_equivalence")
    test_equivalence(XENT, "xent")
    test_equivalence(TRIPLET, "triplet")
    test_resume_other_rank_count()
    test_sync_bn()
    test_bad_input()
    return testlib.finish("mpi_equivalence", work=["mpi_runs", "mpi_data"])


if __name__ == "__main__":
    sys.exit(main())
