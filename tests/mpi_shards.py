"""mpi_shards.py: `mpirun -np N simtune embed` and `simtune topk` (cmd/embed.c, cmd/topk.c,
infer/topk_merge.c) write files IDENTICAL to one process's (h5diff with no tolerance), and a
single process needs no MPI at all.

Data: make_synthetic, 6 classes x 8 images of 40x40, plus a copy of the first class as a 7th
(equal images, so equal scores across shards); weights: a tv_resnet18 at 32 px with a 16-d
embedding head trained one epoch by one process.
  embed   3 ranks, --batch 5: each rank embeds whole batches of the single process (56 images =
          12 batches: 4/4/4), rank 0 gathers and writes the file
  topk    3 ranks, --tile-rows 5, cosine and l2, k = 7 and k = 60 > 56 gallery rows (empty
          slots padded): each rank searches whole tiles, rank 0 merges exactly, ties (the copied
          class, in the first and the last shard) to the lower gallery row as one process
  default 3 ranks WITHOUT --tile-rows, cosine and l2: random 40000 x 16 gallery, 4100 queries
  tiles   (two query blocks of at most 4096), so the default tile (256 MiB budget / (4096 + ld)
          floats = 16316 or 16320 rows) cuts the gallery into 3 tiles, one per rank, the last
          partial; rows of the first tile copied into the last (ties across shards)
  no MPI  the binary does not link libmpi (ldd), and a launch that claims 2 processes with
          an unloadable MPI library is refused with a message naming the library
Usage (ctest): mpi_shards.py MAKE_SYNTHETIC
"""
import os
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, check

MPIRUN = shutil.which("mpirun")
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]

CONFIG = """model: {arch: tv_resnet18, image_size: 32, embed_dim: 16}
data:
  train: [{path: shard_data, name: synth}]
  val_fraction: 0
  sampler: pk
  pk: {p: 3, k: 2}
  workers: 1
loss: {type: triplet}
optimizer: {type: sgd, lr: 0.01}
freeze_until: all
epochs: 1
device: cpu
threads: 1
output: {dir: shard_runs, name: w}
"""


def run(args, ranks=1, env=None):
    cmd = ([MPIRUN] + MPI_FLAGS + ["-np", str(ranks)] if ranks > 1 else []) + [BIN] + args
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300, env=env)


def identical(a, b, what):
    r = subprocess.run(["h5diff", a, b], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(r.returncode == 0, f"{what}: {a} and {b} differ: {r.stdout[-600:]}")


def test_embed():
    args = ["embed", "--weights", "shard_runs/w/best_weights.h5", "--images", "shard_data", "--batch", "5",
            "--threads", "1", "--out"]
    r1, r3 = run(args + ["embed1.h5"]), run(args + ["embed3.h5"], ranks=3)
    if check(r1.returncode == 0 and r3.returncode == 0, f"embed: exit {r1.returncode} / {r3.returncode}: "
             f"{r1.stderr[-400:]} {r3.stderr[-400:]}"):
        identical("embed1.h5", "embed3.h5", "embed on 3 ranks")
        check(r3.stdout.count("-> embed3.h5") == 1, "embed: 3 ranks printed other than one summary")


def test_topk():
    for metric in ("cosine", "l2"):
        for k in ("7", "60"):
            args = ["topk", "--gallery", "embed1.h5", "--queries", "embed1.h5", "-k", k, "--metric", metric,
                    "--tile-rows", "5", "--threads", "1", "--out"]
            r1, r3 = run(args + ["top1.h5"]), run(args + ["top3.h5"], ranks=3)
            if check(r1.returncode == 0 and r3.returncode == 0, f"topk {metric} k={k}: exit {r1.returncode} / "
                     f"{r3.returncode}: {r1.stderr[-400:]} {r3.stderr[-400:]}"):
                identical("top1.h5", "top3.h5", f"topk {metric} k={k} on 3 ranks")


def write_random_embeddings():
    """default_gallery.h5 (40000, 16) with rows 0..99 copied to 39900..39999, default_queries.h5 (4100, 16)."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(5)
    gallery = rng.standard_normal((40000, 16), dtype=np.float32)
    gallery[39900:] = gallery[:100]
    for path, x in (("default_gallery.h5", gallery), ("default_queries.h5", gallery[::9][:4100] + 0.01)):
        with h5py.File(path, "w") as f:
            f["embeddings"] = x


def test_topk_default_tiles():
    write_random_embeddings()
    for metric in ("cosine", "l2"):
        args = ["topk", "--gallery", "default_gallery.h5", "--queries", "default_queries.h5", "-k", "7", "--metric",
                metric, "--threads", "1", "--out"]
        r1, r3 = run(args + ["default1.h5"]), run(args + ["default3.h5"], ranks=3)
        if check(r1.returncode == 0 and r3.returncode == 0, f"topk default tiles {metric}: exit {r1.returncode} / "
                 f"{r3.returncode}: {r1.stderr[-400:]} {r3.stderr[-400:]}"):
            identical("default1.h5", "default3.h5", f"topk {metric} with the default tile on 3 ranks")


def test_no_mpi_needed():
    r = subprocess.run(["ldd", BIN], stdout=subprocess.PIPE, text=True)
    check(r.returncode == 0 and "libmpi" not in r.stdout, f"the binary links libmpi: {r.stdout}")
    env = dict(os.environ, OMPI_COMM_WORLD_SIZE="2", SIMTUNE_MPI_LIBRARY="libno_such_mpi.so")
    r = run(["topk", "--gallery", "embed1.h5", "--queries", "embed1.h5", "--out", "x.h5"], env=env)
    check(r.returncode == 1 and "launched as 2 processes, but MPI cannot be loaded" in r.stderr
          and "libno_such_mpi.so" in r.stderr, f"unloadable MPI: exit {r.returncode}: {r.stderr[-400:]}")


def main():
    (make_synthetic,) = testlib.inputs(["MAKE_SYNTHETIC"])
    if not MPIRUN or not shutil.which("h5diff"):
        testlib.missing_oracle("mpi_shards", "mpirun (openmpi-bin) or h5diff (hdf5-tools) is not installed")
    for folder in ("shard_runs", "shard_data"):  # a failed run keeps them for inspection
        shutil.rmtree(folder, ignore_errors=True)
    ok = subprocess.run([make_synthetic, "shard_data", "6", "8", "40", "40", "23", "0", "0"]).returncode == 0
    if ok:
        shutil.copytree("shard_data/device_000", "shard_data/device_copy")
    with open("shard.yaml", "w") as f:
        f.write(CONFIG)
    r = run(["train", "--config", "shard.yaml"]) if ok else None
    if check(r is not None and r.returncode == 0, f"training the weights: {r and r.stderr[-400:]}"):
        test_embed()
        test_topk()
        test_topk_default_tiles()
        test_no_mpi_needed()
    return testlib.finish("mpi_shards", work=["shard_runs", "shard_data"])


if __name__ == "__main__":
    sys.exit(main())
