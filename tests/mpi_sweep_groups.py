"""mpi_sweep_groups.py: `mpirun -np N simtune sweep` with rank groups (ranks_per_trial G: each
trial trains data parallel on G ranks; train/sweep.h "Rank groups", kernels/comm.h st_comm_split),
through the CLI as a user runs it, on the CPU backend with 1 thread per rank (--oversubscribe).

The sweep: tv_resnet18 at 32 px, frozen backbone (freeze_until: all) so that data-parallel
training is one process's computation up to float rounding (tests/mpi_equivalence.py), cross-
entropy on a generated 6-class dataset (make_synthetic, 8 images of 40x40 each), global batch 6,
metric val/loss; hyperband R = 2, eta = 2: 4 trials, 5 evaluations.
  - reference: one process;
  - `mpirun -np 4` with ranks_per_trial: 2 (the sweep key): two groups, so two workers on the
    queue, every evaluation trained "on 2 ranks" (progress; `ranks` 2 in state.json and in each
    trial's metrics.jsonl, absent for one process), the closing summary once; the same
    evaluations, trials, statuses and parameters as the reference, every metric within rtol 1e-4;
  - a failed evaluation does not hang the group: with trial 0's run folder locked by another
    process, `mpirun -np 2 --ranks-per-trial 2` (one group) ends at once (SIMTUNE_COMM_TIMEOUT=30
    would name a rank left waiting), leader and member exit 1, the leader's message names the
    trial, no claim is left; after the lock is gone, --resume (G = 2, as recorded in
    sweep.yaml) finishes the sweep with the reference's leaderboard;
  - bad input: 3 ranks with --ranks-per-trial 2, and one process with ranks_per_trial: 2, are
    refused with the numbers (once, by rank 0) before any folder is made; ranks_per_trial 4 with
    the global batch of 6 is refused naming the trial (--dry-run).

Tolerance: a group of 2 adds the same float32 terms as one process in another order (each rank's
GEMMs over 3 rows, plus the gradient all-reduce); over the <= 12 SGD steps of a trial that moves
val/loss by about 1e-7 relative (observed: 3e-8 .. 1e-7); rtol 1e-4 leaves a 1000x margin while
a missing all-reduce, a wrong batch slice or a member training another trial changes the losses
after the first step by whole percents. The lrs are far apart, so the promotions (which compare
metrics) cannot flip within that tolerance.
~40 s on 2 cores at load average 1-6.
Usage (ctest): mpi_sweep_groups.py MAKE_SYNTHETIC
"""
import csv
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, check

MPIRUN = shutil.which("mpirun")
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
WORK = os.path.abspath("mpi_sweep_groups_work")
EVALUATIONS = 5

BASE_YAML = """\
model: {arch: tv_resnet18, image_size: 32}
data:
  train: [{path: data, name: synth}]
  val_fraction: 0.25
  batch_size: 6
  augment: {random_resized_crop: true, scale: [0.5, 1], flip: true}
  workers: 1
loss: {type: cross_entropy, label_smoothing: 0.1}
optimizer: {type: sgd, lr: 0.002, momentum: 0.9}
schedule: {type: cosine}
freeze_until: all
epochs: 2
seed: 4
device: cpu
threads: 1
output: {dir: runs, keep_last: 1, save_best: false}
"""

SWEEP_YAML = """\
base: base.yaml
seed: 3
metric: {name: val/loss, goal: minimize}
hyperband: {max_resource: 2, eta: 2}
parameters:
  optimizer.lr: {distribution: log_uniform, min: 5.0e-4, max: 5.0e-3}
"""


def run(args, ranks=1, env=None, timeout=300):
    cmd = ([MPIRUN] + MPI_FLAGS + ["-np", str(ranks)] if ranks > 1 else []) + [BIN] + args
    p = subprocess.run(cmd, cwd=WORK, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    print(f"{ranks} rank(s): simtune {' '.join(args)}: exit {p.returncode}", flush=True)
    return p


def sweep(folder, *extra):
    return ["sweep", "--config", "sweep.yaml", "--set", f"dir={folder}", *extra]


def leaderboard(folder):
    with open(os.path.join(WORK, folder, "trials.csv")) as f:
        return list(csv.DictReader(f))


def state(folder):
    with open(os.path.join(WORK, folder, "state.json")) as f:
        return json.load(f)


def close(a, b, rtol=1e-4):
    return a is not None and b is not None and abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


def ranks_recorded(folder):
    """The `ranks` of every evaluation in state.json and in the trials' metrics.jsonl (None: absent)."""
    found = [e.get("ranks") for e in state(folder)["evaluations"]]
    for trial_dir in sorted(os.listdir(os.path.join(WORK, folder, "trials"))):
        with open(os.path.join(WORK, folder, "trials", trial_dir, "metrics.jsonl")) as f:
            found += [json.loads(line).get("ranks") for line in f]
    return found


def same_results(folder, ref, what):
    """folder's leaderboard and evaluations equal the reference's, metrics within rtol."""
    rows, ref_rows = leaderboard(folder), leaderboard(ref)
    check(len(rows) == len(ref_rows) == 4, f"{what}: {len(rows)} leaderboard rows, reference {len(ref_rows)}")
    for a, b in zip(rows, ref_rows):
        for key in a:
            if key == "metric":
                check(close(float(a[key]), float(b[key])), f"{what}: trial {a['trial']}: metric {a[key]} vs {b[key]}")
            else:
                check(a[key] == b[key], f"{what}: rank {a['rank']}: {key} {a[key]!r} vs {b[key]!r}")
    mine = {(e["trial"], e["rung"]): e["metric"] for e in state(folder)["evaluations"]}
    theirs = {(e["trial"], e["rung"]): e["metric"] for e in state(ref)["evaluations"]}
    check(sorted(mine) == sorted(theirs) and len(mine) == EVALUATIONS,
          f"{what}: evaluations {sorted(mine)} vs {sorted(theirs)}")
    for k in theirs:
        check(close(mine.get(k), theirs[k]), f"{what}: evaluation {k}: {mine.get(k)} vs {theirs[k]}")
    check(state(folder)["claims"] == [], f"{what}: claims left: {state(folder)['claims']}")


def test_groups(ref):
    p = run(sweep("groups", "--set", "ranks_per_trial=2"), ranks=4)
    if not check(p.returncode == 0, f"4 ranks, ranks_per_trial 2: exit {p.returncode}: {p.stderr[-2000:]}"):
        return
    trained = re.findall(r"trial \d{4}: bracket \d+ rung \d+/\d+, training to \d+ epochs(.*)", p.stdout)
    check(len(trained) == EVALUATIONS, f"{len(trained)} evaluations trained, {EVALUATIONS} expected")
    check(all(t == " on 2 ranks" for t in trained), f"not every evaluation ran on 2 ranks: {trained}")
    workers = set(re.findall(r"worker pid (\d+) on host", p.stdout))
    check(len(workers) == 2, f"4 ranks in groups of 2 are 2 workers on the queue, got {len(workers)}")
    check(p.stdout.count("sweep finished") == 1, "the closing summary is rank 0's alone")
    with open(os.path.join(WORK, "groups", "sweep.yaml")) as f:
        check("ranks_per_trial: 2" in f.read(), "sweep.yaml does not record ranks_per_trial: 2")
    recorded = ranks_recorded("groups")
    check(len(recorded) == 2 * EVALUATIONS and set(recorded) == {2}, f"ranks recorded: {recorded}, want 2 each")
    same_results("groups", ref, "4 ranks in groups of 2")


def test_failed_evaluation(ref):
    run_dir = os.path.join(WORK, "failed", "trials", "0000", "checkpoints")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, ".lock"), "w") as holder:  # another process holds the run folder
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = run(sweep("failed", "--ranks-per-trial", "2"), ranks=2, env={"SIMTUNE_COMM_TIMEOUT": "30"}, timeout=120)
    check(p.returncode != 0, "a failed evaluation: the sweep exited 0")
    check("trial 0: rank 0:" in p.stderr and "in use" in p.stderr,
          f"the leader's message does not name the trial and the lock: {p.stderr[-1500:]}")
    check("rank 0 of this rank's group ended the sweep with an error" in p.stderr,
          f"the member did not stop on its leader's word: {p.stderr[-1500:]}")
    check("waited" not in p.stderr, f"a rank was left waiting for the watchdog: {p.stderr[-1500:]}")
    check(state("failed")["claims"] == [], f"the failed evaluation left a claim: {state('failed')['claims']}")
    p = run(["sweep", "--resume", "failed"], ranks=2)
    if check(p.returncode == 0, f"--resume after the failure: exit {p.returncode}: {p.stderr[-2000:]}"):
        check(" on 2 ranks" in p.stdout, "--resume did not keep ranks_per_trial 2 from sweep.yaml")
        same_results("failed", ref, "resumed after a failed evaluation")


def test_bad_input():
    p = run(sweep("bad", "--ranks-per-trial", "2"), ranks=3)
    message = "ranks_per_trial 2: 3 ranks cannot be split into groups of 2 consecutive ranks (3 % 2 = 1)"
    check(p.returncode != 0 and p.stderr.count(message) == 1,
          f"3 ranks in groups of 2: exit {p.returncode}, want the message once: {p.stderr[-1500:]}")
    p = run(sweep("bad", "--set", "ranks_per_trial=2"))
    check(p.returncode == 1 and "1 rank cannot be split into groups of 2" in p.stderr,
          f"one process with ranks_per_trial 2: exit {p.returncode}: {p.stderr[-800:]}")
    check(not os.path.exists(os.path.join(WORK, "bad")), "a refused sweep made its folder")
    p = run(sweep("bad", "--set", "ranks_per_trial=4", "--dry-run"))
    check(p.returncode == 1 and "trial 0 (" in p.stderr and "its global batch of 6 images cannot be split evenly "
          "across ranks_per_trial 4 ranks (6 % 4 = 2)" in p.stderr,
          f"ranks_per_trial 4 with a batch of 6: exit {p.returncode}: {p.stderr[-800:]}")


def main():
    (make_synthetic,) = testlib.inputs(["MAKE_SYNTHETIC"])
    if not MPIRUN:
        testlib.missing_oracle("mpi_sweep_groups", "mpirun (openmpi-bin) is not installed")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    for name, text in (("base.yaml", BASE_YAML), ("sweep.yaml", SWEEP_YAML)):
        with open(os.path.join(WORK, name), "w") as f:
            f.write(text)
    if subprocess.run([make_synthetic, os.path.join(WORK, "data"), "6", "8", "40", "40", "17", "0", "0"],
                      stdout=subprocess.DEVNULL).returncode != 0:
        check(False, "make_synthetic failed")
        return testlib.finish("mpi_sweep_groups")
    p = run(sweep("one"))
    if check(p.returncode == 0, f"the one-process reference: exit {p.returncode}: {p.stderr[-2000:]}"):
        check(" on " not in "".join(re.findall(r"training to \d+ epochs.*", p.stdout)),
              "one process says its trials ran on several ranks")
        check(set(ranks_recorded("one")) == {None}, f"one process recorded ranks: {ranks_recorded('one')}")
        test_groups("one")
        test_failed_evaluation("one")
    test_bad_input()
    return testlib.finish("mpi_sweep_groups", work=[WORK])


if __name__ == "__main__":
    sys.exit(main())
