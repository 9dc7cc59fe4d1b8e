#!/usr/bin/env python3
"""test_trainer_cli.py: `simtune train` behaviours a user relies on, through the binary.

Data: cli_data/ (6 generated device classes x 8 images of 40x40, written by the
trainer_cli_data fixture with tests/make_synthetic.c). Model: tv_resnet18 at 32x32 frozen up to
conv4_block2_out. Wall time about 15 s of CPU (75-120 s at load average 10).

  1. --help: stdout, exit 0, every option listed.
  2. Bad usage exits 2 (no arguments, an unknown option, --config with --resume, --epochs
     not a number); a missing
     config file exits 1 naming it.
  3. An unknown config key exits 1 with FILE:LINE:COLUMN of the key and its path; a bad --set
     value names the --set text and the key.
  4. Divergence: phase 1 (lr 0.001) is fine, phase 2 uses lr 100 until the loss explodes
     (over divergence_factor times the reference loss): exit 1, the message says "diverged",
     names the step and the run folder; the checkpoints of the
     epochs before stay (output.keep_last 0 = all) with finite weights (h5py), metrics.jsonl
     stays valid JSON (a NaN val/loss is written as null). In `simtune sweep` a trial at lr 100
     diverges in its first epoch: scored NaN (null in state.json), the sweep exits 0.
  5. A second run into an existing run folder is refused (exit 1, HINT --resume), it would mix
     its metrics and checkpoints with the first.
  6. Ctrl-C: SIGINT to the process once it reports "epoch 2 step 1/": exit 130, a checkpoint is
     written, the message says how to resume; `simtune train --resume RUN` finishes, and the
     resumed run's metrics.jsonl (wall-time fields removed) and best_weights.h5 bytes of every
     weight equal those of a straight run (the checkpoint/loader/augmentation state continue
     bit-exactly wherever the signal lands).
  7. --resume RUN --epochs 4 on a finished 3-epoch run (step schedule) equals a straight 4-epoch
     run (metrics, every weight) and rewrites config.yaml; with cosine it is refused with the
     reason and changes nothing. output.keep_last 2 keeps the two newest ckpt-*.h5 and best.h5.
  8. --check exits 1 with a message for a flat folder, an empty folder, a symlink loop,
     freeze_until: layer4 on tv_resnet18, data.pk.p above the class count, device: cuda (when no
     GPU is present), a run folder locked by another process and a --name whose folder holds
     a run; a good config passes and no run folder is created.
  9. Without output.name or --name the run folder is <config stem>-<date>-<time>, and -2 when
     that name is taken.
Exit 0 on success, 1 on the first failure (with the reason), 77 when SIMTUNE_BIN is unset.
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


def run(args, **kw):
    return subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


BASE = """model: {arch: tv_resnet18, image_size: 32}
data:
  train: [{path: cli_data, name: synth}]
  val_fraction: 0.25
  batch_size: 6
  augment: {random_resized_crop: true, scale: [0.5, 1], flip: true}
  workers: 2
loss: {type: cross_entropy}
optimizer: {type: sgd, lr: 0.005}
schedule: {type: cosine}
freeze_until: conv4_block2_out
seed: 4
device: cpu
threads: 2
output: {dir: cli_runs, keep_last: 0}
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def metrics(run_dir):
    rows = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)  # also checks the line is valid JSON
            row.pop("seconds", None)
            row.pop("images_per_second", None)
            rows.append(row)
    return rows


def test_help_and_usage():
    r = run(["train", "--help"])
    check(r.returncode == 0, f"--help exit {r.returncode}")
    for opt in ("--config", "--set", "--name", "--device", "--threads", "--resume", "--epochs", "--strict", "--help"):
        check(opt in r.stdout, f"--help does not list {opt}")
    check(r.stderr == "", "--help wrote to stderr")
    for args in ([], ["--bogus"], ["--config", "a.yaml", "--resume", "x"], ["--resume", "x", "--epochs", "abc"]):
        r = run(["train"] + args)
        check(r.returncode == 2, f"train {args}: exit {r.returncode}, want 2 (bad usage)")
    r = run(["train", "--config", "no_such_config.yaml"])
    check(r.returncode == 1 and "no_such_config.yaml" in r.stderr,
          f"missing config: exit {r.returncode}, stderr {r.stderr!r}")


def test_config_errors():
    text = BASE.replace("optimizer: {type: sgd, lr: 0.005}", "optimizer:\n  type: sgd\n  momentun: 0.9")
    write("cli_unknown.yaml", text)
    line = text.splitlines().index("  momentun: 0.9") + 1
    r = run(["train", "--config", "cli_unknown.yaml"])
    check(r.returncode == 1, f"unknown key: exit {r.returncode}, want 1")
    check(re.search(rf"cli_unknown\.yaml:{line}:\d+: optimizer\.momentun", r.stderr) is not None,
          f"unknown key: message does not name cli_unknown.yaml:{line} and optimizer.momentun: {r.stderr!r}")
    write("cli_base.yaml", BASE)
    r = run(["train", "--config", "cli_base.yaml", "--set", "optimizer.lr=fast"])
    check(r.returncode == 1 and "optimizer.lr" in r.stderr and "--set" in r.stderr,
          f"bad --set: exit {r.returncode}, stderr {r.stderr!r}")
    made = [d for d in os.listdir("cli_runs")] if os.path.isdir("cli_runs") else []
    check(not any(d.startswith("cli_base") for d in made), f"a config error must not create a run folder: {made}")


def test_divergence():
    text = BASE.replace("schedule: {type: cosine}", "schedule: {type: constant}") + (
        "phases:\n"
        "  - {name: warm, epochs: 1, optimizer: {lr: 0.001}}\n"
        "  - {name: boom, epochs: 5, optimizer: {lr: 100}}\n")
    write("cli_diverge.yaml", text)
    r = run(["train", "--config", "cli_diverge.yaml", "--name", "diverge"])
    print(r.stdout[-600:])
    check(r.returncode == 1, f"divergence: exit {r.returncode}, want 1")
    check("diverged" in r.stderr and "cli_runs/diverge" in r.stderr,
          f"divergence: the message must say diverged and name the run folder: {r.stderr!r}")
    ckpts = sorted(f for f in os.listdir("cli_runs/diverge") if re.fullmatch(r"ckpt-\d+\.h5", f))
    check("ckpt-6.h5" in ckpts, f"divergence: the epoch-1 checkpoint is gone: {ckpts}")
    rows = metrics("cli_runs/diverge")
    check(len(rows) >= 1 and rows[0]["phase"] == "warm", f"divergence: metrics {rows}")
    # the loss explodes within phase boom's first epoch, which the run stops: no checkpoint of it
    check(ckpts == ["ckpt-6.h5"] and re.search(r"at step \d+ ", r.stderr) is not None,
          f"divergence: want only the epoch-1 checkpoint and the step in the message: {ckpts} {r.stderr!r}")
    for c in ckpts:  # every kept checkpoint holds finite weights
        w = weights_bytes(os.path.join("cli_runs/diverge", c), finite_only=True)
        check(w is None or w, f"divergence: {c} holds non-finite weights")


def test_sweep_scores_divergence():
    """A trial that diverges is scored NaN (null in state.json) and the sweep goes on to exit 0:
    the trainer returns ST_TRAIN_DIVERGED, which st_train_trial reads (no message matching)."""
    write("cli_sweep_base.yaml", BASE + "epochs: 1\n")
    write("cli_sweep_diverge.yaml", "base: cli_sweep_base.yaml\n"
          "metric: {name: val/accuracy, goal: maximize}\n"
          "dir: cli_runs/sweep_diverge\n"
          "parameters:\n  optimizer.lr: {value: 100}\n")
    r = run(["sweep", "--config", "cli_sweep_diverge.yaml"])
    check(r.returncode == 0, f"sweep with a diverging trial: exit {r.returncode}, {r.stderr[-300:]!r}")
    with open("cli_runs/sweep_diverge/state.json") as f:
        evaluations = json.load(f)["evaluations"]
    check([e["metric"] for e in evaluations] == [None],
          f"the diverged trial must be scored NaN (null): {evaluations}")
    check(not os.path.exists("cli_runs/sweep_diverge/trials/0000/checkpoints/metrics.jsonl"),
          "the trial finished an epoch: it did not diverge, so the test proves nothing")


def train_until_interrupted(config, name):
    """Start a run, SIGINT it after the 'epoch 2 step 1/' progress line (an epoch and a half of
    work remain, so the signal lands well before the end), return (exit, output, sent)."""
    p = subprocess.Popen([BIN, "train", "--config", config, "--name", name], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = []
    sent = False
    for line in p.stdout:
        out.append(line)
        if not sent and "epoch 2 step 1/" in line:
            p.send_signal(signal.SIGINT)
            sent = True
    p.wait(timeout=600)
    return p.returncode, "".join(out), sent


def weights_bytes(path, finite_only=False):
    """Every float dataset's raw bytes, via h5py and numpy when present (else None: not compared).
    finite_only: True when every float32 value of the model weights is finite, else False."""
    out = testlib.float32_datasets(path)
    if out is None:
        return None
    if finite_only:
        import numpy as np  # importable: float32_datasets read the file with it
        weights = [v for k, v in out.items() if not k.startswith("state/")]
        return len(weights) > 0 and all(np.isfinite(v).all() for v in weights)
    return {k: v.tobytes() for k, v in out.items()}


def test_interrupt_and_resume():
    text = BASE + "epochs: 3\n"
    write("cli_resume.yaml", text)
    r = run(["train", "--config", "cli_resume.yaml", "--name", "straight"])
    check(r.returncode == 0, f"straight run: exit {r.returncode} {r.stderr[-500:]!r}")
    r = run(["train", "--config", "cli_resume.yaml", "--name", "straight"])
    check(r.returncode == 1 and "already exists" in r.stderr and "--resume cli_runs/straight" in r.stderr,
          f"a second run into the same folder: exit {r.returncode}, stderr {r.stderr!r}")
    code, out, sent = train_until_interrupted("cli_resume.yaml", "interrupted")
    check(sent, "never saw the progress line 'epoch 2 step 1/'")
    check(code == 130, f"SIGINT: exit {code}, want 130; output tail {out[-400:]!r}")
    check("simtune train --resume cli_runs/interrupted" in out, "SIGINT: no resume hint in the output")
    steps = [int(m.group(1)) for m in map(lambda f: re.fullmatch(r"ckpt-(\d+)\.h5", f), os.listdir("cli_runs/interrupted")) if m]
    check(any(s > 6 for s in steps), f"SIGINT: no checkpoint after epoch 1's (step 6): steps {steps}")
    check(not os.path.exists("cli_runs/interrupted/best_weights.h5"), "SIGINT: an interrupted run exported weights")
    r = run(["train", "--resume", "cli_runs/interrupted"])
    check(r.returncode == 0, f"--resume: exit {r.returncode} {r.stderr[-500:]!r}")
    check("resumed from" in r.stdout, "--resume: no 'resumed from' line")
    a, b = metrics("cli_runs/straight"), metrics("cli_runs/interrupted")
    check(len(a) == 3 and a == b, f"resumed metrics differ from the straight run:\n{a}\n{b}")
    wa = weights_bytes("cli_runs/straight/best_weights.h5")
    wb = weights_bytes("cli_runs/interrupted/best_weights.h5")
    if wa is not None:
        check(wa == wb and len(wa) > 100, "resumed best_weights.h5 differs from the straight run's")


def test_extend():
    """--resume --epochs N on a finished run: the step schedule does not depend on the run's
    length, so 3 epochs extended to 4 equal a straight 4-epoch run (metrics and every weight);
    cosine does, and is refused with the reason, leaving the run as it was. output.keep_last 2
    keeps the two newest epoch checkpoints (6 steps an epoch) and best.h5."""
    text = BASE.replace("schedule: {type: cosine}", "schedule: {type: step, step_size: 2, gamma: 0.5}")
    write("cli_extend.yaml", text + "epochs: 3\n")
    r = run(["train", "--config", "cli_extend.yaml", "--name", "ext3"])
    check(r.returncode == 0, f"3-epoch run: exit {r.returncode} {r.stderr[-500:]!r}")
    r = run(["train", "--config", "cli_extend.yaml", "--name", "ext4", "--set", "epochs=4", "--set", "output.keep_last=2"])
    check(r.returncode == 0, f"4-epoch run: exit {r.returncode} {r.stderr[-500:]!r}")
    r = run(["train", "--resume", "cli_runs/ext3", "--epochs", "4"])
    check(r.returncode == 0 and "extended: phase 'main' now has 4 epochs" in r.stdout,
          f"--resume --epochs 4: exit {r.returncode} {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
    a, b = metrics("cli_runs/ext3"), metrics("cli_runs/ext4")
    check(len(a) == 4 and a == b, f"extended metrics differ from the straight 4-epoch run:\n{a}\n{b}")
    wa, wb = weights_bytes("cli_runs/ext3/best_weights.h5"), weights_bytes("cli_runs/ext4/best_weights.h5")
    if wa is not None:
        check(wa == wb and len(wa) > 100, "extended best_weights.h5 differs from the straight run's")
    with open("cli_runs/ext3/config.yaml") as f:
        check(re.search(r"^epochs: 4$", f.read(), re.M), "the extended run's config.yaml does not say epochs: 4")
    kept = sorted(f for f in os.listdir("cli_runs/ext4") if f.endswith(".h5"))
    check(kept == ["best.h5", "best_weights.h5", "ckpt-18.h5", "ckpt-24.h5"], f"output.keep_last 2: {kept}")

    write("cli_cosine.yaml", BASE + "epochs: 3\n")
    r = run(["train", "--config", "cli_cosine.yaml", "--name", "cos3"])
    check(r.returncode == 0, f"cosine run: exit {r.returncode} {r.stderr[-500:]!r}")
    r = run(["train", "--resume", "cli_runs/cos3", "--epochs", "4"])
    check(r.returncode == 1 and "cosine schedule depends on the run's length" in r.stderr,
          f"cosine --epochs 4: exit {r.returncode}, want 1 with the reason: {r.stderr!r}")
    with open("cli_runs/cos3/config.yaml") as f:
        check(re.search(r"^epochs: 3$", f.read(), re.M), "a refused extension changed config.yaml")
    check(len(metrics("cli_runs/cos3")) == 3, "a refused extension trained")


def hold_lock(folder):
    """Hold folder/.lock as another simtune process would (flock + 'pid host start-time')."""
    import fcntl
    import socket
    os.makedirs(folder, exist_ok=True)
    f = open(os.path.join(folder, ".lock"), "w")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(f"{os.getpid()} {socket.gethostname()} 2026-01-01T00:00:00Z\n")
    f.flush()
    return f


def test_check():
    """--check runs every check that needs no training: each bad case exits 1 with a message
    naming the thing, where before it said valid and failed once training started."""
    write("cli_check.yaml", BASE)
    r = run(["train", "--config", "cli_check.yaml", "--check", "--name", "checked"])
    check(r.returncode == 0 and "valid" in r.stdout, f"--check of a good config: exit {r.returncode} {r.stderr!r}")
    check(not os.path.exists("cli_runs/checked"), "--check created the run folder")
    image = next(os.path.join(dp, f) for dp, _, fs in os.walk("cli_data") for f in fs if f.endswith(".png"))
    for folder in ("chk_flat", "chk_empty", "chk_loop/c1"):
        shutil.rmtree(folder.split("/")[0], ignore_errors=True)
        os.makedirs(folder)
    shutil.copy(image, "chk_flat/1.png")
    shutil.copy(image, "chk_loop/c1/1.png")
    os.symlink("../c1", "chk_loop/c1/again")
    cases = [(["data.train=[chk_flat]"], "chk_flat"),
             (["data.train=[chk_empty]"], "chk_empty: no images"),
             (["data.train=[chk_loop]"], "symlink loop"),
             (["freeze_until=layer4"], "no layer 'layer4' in tv_resnet18"),
             (["data.sampler=pk", "data.pk.p=7", "data.pk.k=2", "data.batch_size=0"],
              "data.pk.p = 7 classes per batch, but the training images have 6")]
    if not os.path.exists("/dev/nvidia0"):  # with a GPU, device cuda is valid
        cases.append((["device=cuda"], "device cuda"))
    for sets, want in cases:
        args = ["train", "--config", "cli_check.yaml", "--check"]
        for s in sets:
            args += ["--set", s]
        r = run(args)
        check(r.returncode == 1 and want in r.stderr and "cli_check.yaml" in r.stderr,
              f"--check {sets}: exit {r.returncode}, want 1 with {want!r}: {r.stderr!r}")
    r = run(["train", "--config", "cli_check.yaml", "--check", "--name", "ext3"])  # test_extend's run
    check(r.returncode == 1 and "already exists" in r.stderr,
          f"--check of a name whose folder holds a run: exit {r.returncode}, stderr {r.stderr!r}")
    held = hold_lock("cli_runs/busy")
    r = run(["train", "--config", "cli_check.yaml", "--check", "--name", "busy"])
    check(r.returncode == 1 and f"in use by pid {os.getpid()}" in r.stderr,
          f"--check of a locked run folder: exit {r.returncode}, stderr {r.stderr!r}")
    held.close()


def test_default_name():
    """Without output.name (or --name) a run goes to <config stem>-<date>-<time>, as --help says;
    a name already taken (two runs in the same second) gets -2 instead of mixing with it."""
    write("cli_named.yaml", BASE + "epochs: 1\n")
    r = run(["train", "--config", "cli_named.yaml", "--check"])
    check(re.search(r"run folder cli_runs/cli_named-\d{8}-\d{6}\n", r.stdout),
          f"--check names the default run folder: {r.stdout!r}")
    now = time.time()
    for s in range(180):  # take every name of the next 3 minutes, so the run must step aside
        os.makedirs("cli_runs/cli_named-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now + s)), exist_ok=True)
    r = run(["train", "--config", "cli_named.yaml"])
    m = re.search(r"^run (cli_runs/cli_named-\d{8}-\d{6}-2): ", r.stdout, re.M)
    check(r.returncode == 0 and m and os.path.exists(m.group(1) + "/metrics.jsonl"),
          f"default run name with a collision: exit {r.returncode}, {r.stdout[:200]!r} {r.stderr[-300:]!r}")


def main():
    testlib.inputs(status=77)
    shutil.rmtree("cli_runs", ignore_errors=True)
    t0 = time.time()
    test_help_and_usage()
    test_config_errors()
    test_divergence()
    test_sweep_scores_divergence()
    test_interrupt_and_resume()
    test_extend()
    test_check()
    test_default_name()
    sys.exit(testlib.finish("test_trainer_cli", note=f"{time.time() - t0:.1f} s"))


if __name__ == "__main__":
    main()
