#!/usr/bin/env python3
"""test_full_disk.py: `simtune train` when the disk fills up (issue 13 item 6), through the binary.

The disk is the LD_PRELOAD library tests/enospc_shim.c (argv[1]): the run folder's files may
take N bytes, then writes fail with ENOSPC, exactly what a full file system returns. It needs no
root and no mount, so it runs everywhere; where a tmpfs can be mounted (root), case 4 repeats
case 2 on a real full file system. Data: full_disk_data/ (6 generated classes x 8 images of
40x40, the full_disk_data fixture). Model: tv_resnet18 at 32x32, 2 epochs of 6 steps, frozen to
conv5_block1_out; one checkpoint is S = 64 MB. Wall time about 60 s on 2 idle cores.

  0. A reference run under the shim with no limit measures what a whole run takes (T bytes)
     and the sizes of a checkpoint (S) and of best_weights.h5 (E).
  1. metrics.jsonl append fails (budget 200 bytes: the lock file, then the first line): exit 1,
     the message names metrics.jsonl and says "No space left on device"; the file holds no
     partial line.
  2. The second checkpoint fails (budget 1.5 S): exit 1 (a signal would be negative: issue 13
     saw SIGSEGV in HDF5's exit handler), message names ckpt-12.h5 and the OS reason,
     ckpt-6.h5 and best.h5 stay, no *.tmp is left, every metrics line is whole JSON, and
     `simtune train --resume` without the limit resumes from ckpt-6.h5 and finishes.
  3. The export of best_weights.h5 fails (budget T - E/2): exit 1 naming best_weights.h5,
     both checkpoints intact, no *.tmp.
  4. Case 2 on a tmpfs of 1.5 S, when `mount -t tmpfs` works here; and on a tmpfs of 4 kB,
     where config.yaml (written through stdio, which the shim cannot see) fails first: exit 1
     naming config.yaml with the OS reason, no config.yaml.tmp left.
Exit 0 on success, 1 on the first failure (with the reason), 77 when SIMTUNE_BIN is unset.
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
NO_SPACE = "No space left on device"

CONFIG = """model: {arch: tv_resnet18, image_size: 32}
data:
  train: [{path: full_disk_data, name: synth}]
  val_fraction: 0.25
  batch_size: 6
  workers: 2
loss: {type: cross_entropy}
optimizer: {type: sgd, lr: 0.005}
freeze_until: conv5_block1_out
epochs: 2
seed: 4
device: cpu
threads: 2
output: {dir: OUTDIR, keep_last: 0}
"""


def train(outdir, name, budget=None, report=None, resume=False):
    """Run `simtune train` into outdir/name, under the shim when budget is given."""
    env = dict(os.environ)
    if budget is not None:
        env.update(LD_PRELOAD=SHIM, SIMTUNE_TEST_ENOSPC_DIR=os.path.abspath(outdir),
                   SIMTUNE_TEST_ENOSPC_BYTES=str(int(budget)),
                   # a SIMTUNE_SANITIZE build: ASan must accept a library loaded before it
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        if report:
            env["SIMTUNE_TEST_ENOSPC_REPORT"] = report
    config = f"full_disk_{os.path.basename(outdir)}.yaml"
    with open(config, "w") as f:
        f.write(CONFIG.replace("OUTDIR", outdir))
    args = ["train", "--resume", os.path.join(outdir, name)] if resume else \
        ["train", "--config", config, "--name", name]
    return subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def leftovers(run_dir):
    return [f for f in os.listdir(run_dir) if f.endswith(".tmp")]


def metrics_lines(run_dir):
    """The metrics rows; a partial or invalid line is a failure."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        text = f.read()
    check(text == "" or text.endswith("\n"), f"{path}: the last line is partial: {text[-80:]!r}")
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            check(False, f"{path}: not a JSON line: {line!r}")
    return rows


def expect_write_error(r, what, file_name):
    check(r.returncode == 1, f"{what}: exit {r.returncode}, want 1 (negative = killed by a signal); "
                             f"stderr {r.stderr[-400:]!r}")
    check(NO_SPACE in r.stderr and file_name in r.stderr,
          f"{what}: the message must name {file_name} and say {NO_SPACE!r}: {r.stderr!r}")


def test_metrics_append():
    r = train("fd_metrics", "run", budget=200)
    expect_write_error(r, "metrics append", "metrics.jsonl")
    run_dir = "fd_metrics/run"
    check(metrics_lines(run_dir) == [], "metrics append: a line was kept although the append failed")
    check(leftovers(run_dir) == [], f"metrics append: left {leftovers(run_dir)}")


def test_checkpoint(outdir, budget, resume=True):
    r = train(outdir, "run", budget=budget)
    what = f"checkpoint on a full disk ({outdir})"
    expect_write_error(r, what, "ckpt-12.h5")
    run_dir = f"{outdir}/run"
    files = sorted(os.listdir(run_dir))
    check("ckpt-6.h5" in files and "best.h5" in files and "ckpt-12.h5" not in files,
          f"{what}: files {files}")
    check(leftovers(run_dir) == [], f"{what}: left {leftovers(run_dir)}")
    check([row["epoch"] for row in metrics_lines(run_dir)] == [1, 2], f"{what}: metrics epochs")
    if not resume:
        return
    r = train(outdir, "run", resume=True)
    check(r.returncode == 0, f"{what}: --resume after freeing space: exit {r.returncode} {r.stderr[-400:]!r}")
    check(re.search(r"resumed from \S*ckpt-6\.h5", r.stdout) is not None,
          f"{what}: --resume did not resume from ckpt-6.h5: {r.stdout[-600:]!r}")
    check([row["epoch"] for row in metrics_lines(run_dir)] == [1, 2], f"{what}: metrics after resume")


def test_export(budget):
    r = train("fd_export", "run", budget=budget)
    expect_write_error(r, "export", "best_weights.h5")
    run_dir = "fd_export/run"
    files = sorted(os.listdir(run_dir))
    check("ckpt-6.h5" in files and "ckpt-12.h5" in files and "best_weights.h5" not in files,
          f"export: files {files}")
    check(leftovers(run_dir) == [], f"export: left {leftovers(run_dir)}")


def test_config_write():
    r = train("fd_tmpfs", "tiny")
    expect_write_error(r, "config.yaml on a 4 kB tmpfs", "config.yaml")
    check(leftovers("fd_tmpfs/tiny") == [], f"config.yaml on a 4 kB tmpfs: left {leftovers('fd_tmpfs/tiny')}")


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError:
        return False
    return r.returncode == 0


def main():
    for d in ("fd_ref", "fd_metrics", "fd_ckpt", "fd_export"):
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.time()
    r = train("fd_ref", "run", budget=10 ** 15, report="fd_ref_taken.txt")
    if not check(r.returncode == 0, f"reference run: exit {r.returncode} {r.stderr[-400:]!r}"):
        sys.exit(1)
    with open("fd_ref_taken.txt") as f:
        total = int(f.read())
    ckpt = os.path.getsize("fd_ref/run/ckpt-6.h5")
    export = os.path.getsize("fd_ref/run/best_weights.h5")
    print(f"reference: run takes {total} bytes, checkpoint {ckpt}, export {export}")
    test_metrics_append()
    test_checkpoint("fd_ckpt", ckpt * 3 // 2)
    test_export(total - export // 2)
    if mount_tmpfs("fd_tmpfs", ckpt * 3 // 2):
        try:
            test_checkpoint("fd_tmpfs", None, resume=False)
        finally:
            subprocess.run(["umount", "fd_tmpfs"])
        if mount_tmpfs("fd_tmpfs", 4096):
            try:
                test_config_write()
            finally:
                subprocess.run(["umount", "fd_tmpfs"])
    else:
        print("tmpfs case skipped: cannot mount a tmpfs here (not root); the shim cases ran")
    sys.exit(testlib.finish("test_full_disk", note=f"{time.time() - t0:.1f} s"))


if __name__ == "__main__":
    main()
