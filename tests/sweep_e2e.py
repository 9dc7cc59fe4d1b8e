"""sweep_e2e.py: `simtune sweep` end to end with the real trainer (train/trainer.c st_train_trial).

    sweep_e2e.py MAKE_SYNTHETIC      (env SIMTUNE_BIN: the simtune binary; ctest sets it)

Generates a small synthetic dataset (tests/make_synthetic.c), writes a tv_resnet18 batch-hard
triplet base config and a Hyperband sweep over optimizer.lr, loss.triplet.margin and
freeze_until (max_resource 3, eta 3: two brackets, 3x1 -> 1x3 and 2x3), runs it, and checks:
  - it exits 0, and state.json holds exactly one evaluation per (trial, rung) that plan.json
    schedules: every bracket finished, promoted trials being the best floor(n_i / eta) of rung i;
  - trials.csv, trials.jsonl, state.json and each trials/NNNN/metrics.jsonl record the same
    metric per trial and rung, equal to val/map@10 at that epoch in the trainer's own
    trials/NNNN/checkpoints/metrics.jsonl;
  - the leaderboard is ordered (most epochs, then metric, then trial id), so rank 1 is the max;
  - best.yaml is the leader's config, and `simtune train --config best.yaml` trained from scratch
    reproduces the leader's run epoch by epoch; the promoted trial (trained 1 epoch, then resumed
    to 3) is also retrained in one piece when it is not the leader, so resuming == uninterrupted;
  - curves.png is a PNG;
  - disk hygiene (keep_checkpoints: false, the default): the stopped trials' run folders hold no
    *.h5 but keep config.yaml and metrics.jsonl; finished and promoted trials keep theirs (the
    promoted one resumed from them, which the rerun above proves exact).
Training on CPU is deterministic for a given seed, so the checks are equalities (up to the
precision metrics.jsonl prints, PRINT_TOL). Standard library only, so any python3 runs it.
Wall time ~1-1.5 minutes on 2 loaded cores (load average 10).
"""
import csv
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

import testlib
from testlib import BIN, check

MAKE_SYNTHETIC, = testlib.inputs(["MAKE_SYNTHETIC"])
WORK = os.path.abspath("sweep_e2e_work")
METRIC = "val/map@10"
MAX_RESOURCE, ETA = 3, 3
# The trainer's metrics.jsonl prints validation metrics with 6 decimals ("%.6f"), so a value read
# from it is the exact metric rounded to 5e-7; 1e-9 more absorbs the binary->decimal conversion.
PRINT_TOL = 5e-7 + 1e-9


def run(args, what, timeout):
    t0 = time.monotonic()
    p = subprocess.run(args, cwd=WORK, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    print(f"{what}: exit {p.returncode} in {seconds:.1f} s", flush=True)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:], sep="\n", file=sys.stderr)
    return p


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write(name, text):
    with open(os.path.join(WORK, name), "w") as f:
        f.write(text)


BASE_YAML = """\
# tv_resnet18, batch-hard triplet, 32x32 inputs: 48 train / 24 val images, 4 steps per epoch
model: {arch: tv_resnet18, weights: null, image_size: 32, pool: avg, embed_dim: 32}
data:
  train: [{path: data, name: synth}]
  val_fraction: 0.3
  sampler: pk
  pk: {p: 3, k: 4}
  augment: {random_resized_crop: true, scale: [0.5, 1.0], flip: true, color_jitter: 0.1}
  workers: 1
loss: {type: triplet, triplet: {mining: batch_hard, margin: 0.2, normalize: true}}
optimizer: {type: adam, lr: 1.0e-3, weight_decay: 1.0e-4}
schedule: {type: cosine, warmup_epochs: 0}
epochs: 3
seed: 0
device: cpu
threads: 2
validation: {every: 1, metrics: [hit@1, map@10]}
early_stopping: {restore_best: false}
# no best.h5: a tv_resnet18 checkpoint with Adam state is ~130 MB, and the sweep ranks trials by
# the metric at their last epoch, not by their best weights (keeps the test's disk I/O down)
output: {dir: runs, name: base, keep_last: 1, save_best: false}
"""

SWEEP_YAML = f"""\
base: base.yaml
metric: {{name: {METRIC}, goal: maximize}}
seed: 12  # bracket 1 trains conv3+ or everything, so its promoted trial resumes a trained backbone
dir: out/sweep
hyperband: {{max_resource: {MAX_RESOURCE}, min_resource: 1, eta: {ETA}}}
parameters:
  optimizer.lr: {{distribution: log_uniform, min: 1.0e-4, max: 1.0e-2}}
  loss.triplet.margin: {{values: [0.1, 0.3, soft]}}
  freeze_until: {{values: [none, conv3_block2_out, all]}}
"""


def check_plan(sweep_dir):
    """plan.json against --dry-run --json and the two brackets of R=3, eta=3 (Algorithm 1)."""
    p = run([BIN, "sweep", "--config", "sweep.yaml", "--dry-run", "--json"], "sweep --dry-run --json", 60)
    check(p.returncode == 0, "sweep --dry-run --json exits 0")
    dry = json.loads(p.stdout) if p.returncode == 0 else None
    expected = [[{"n": 3, "r": 1}, {"n": 1, "r": 3}], [{"n": 2, "r": 3}]]
    check(dry == expected, f"dry-run plan {dry} != {expected}")
    with open(os.path.join(sweep_dir, "plan.json")) as f:
        plan = json.load(f)
    check([b["rungs"] for b in plan["brackets"]] == expected, "plan.json brackets equal the dry-run plan")
    return plan


def check_state(plan, state):
    """Every scheduled (trial, rung) evaluated exactly once; promotions are the best by metric."""
    evals = {}
    for e in state["evaluations"]:
        key = (e["trial"], e["rung"])
        check(key not in evals, f"state.json: trial {key[0]} rung {key[1]} evaluated twice")
        evals[key] = e
    scheduled = set()
    for b in plan["brackets"]:
        alive = list(range(b["first_trial"], b["first_trial"] + b["rungs"][0]["n"]))
        for i, rung in enumerate(b["rungs"]):
            check(len(alive) == rung["n"], f"bracket s={b['s']} rung {i}: {len(alive)} trials, plan says {rung['n']}")
            for t in alive:
                scheduled.add((t, i))
                e = evals.get((t, i))
                if check(e is not None, f"bracket s={b['s']}: trial {t} rung {i} never evaluated"):
                    check(e["epochs"] == rung["r"], f"trial {t} rung {i}: {e['epochs']} epochs, plan says {rung['r']}")
            metric = {t: evals[(t, i)]["metric"] if (t, i) in evals else math.nan for t in alive}
            ranked = sorted(alive, key=lambda t: (math.isnan(metric[t]), -metric[t], t))  # NaN (diverged) last
            alive = ranked[: rung["n"] // ETA]
    check(set(evals) == scheduled, f"state.json evaluations {sorted(set(evals) - scheduled)} not in the plan")
    return evals


def trainer_metrics(sweep_dir, t):
    """The trainer's per-epoch records of trial t: {epoch: record}."""
    path = os.path.join(sweep_dir, "trials", f"{t:04d}", "checkpoints", "metrics.jsonl")
    return {r["epoch"]: r for r in read_jsonl(path)}


def check_leaderboard(sweep_dir, evals, n_trials):
    rows = read_jsonl(os.path.join(sweep_dir, "trials.jsonl"))
    with open(os.path.join(sweep_dir, "trials.csv"), newline="") as f:
        csv_rows = list(csv.DictReader(f))
    check(len(rows) == n_trials and len(csv_rows) == n_trials, f"leaderboards list {len(rows)}/{len(csv_rows)} of {n_trials} trials")
    for k, (row, crow) in enumerate(zip(rows, csv_rows)):
        t = row["trial"]
        check(row["rank"] == k + 1 and int(crow["rank"]) == k + 1, f"rank {k + 1}: ranks out of order")
        for key in ("trial", "epochs", "rung", "seed"):
            check(int(crow[key]) == row[key], f"trial {t}: trials.csv {key} {crow[key]} != trials.jsonl {row[key]}")
        check(crow["status"] == row["status"], f"trial {t}: status {crow['status']} != {row['status']}")
        # both files print the shortest text that reads back to the same double: exact equality
        check(float(crow["metric"]) == row["metric"], f"trial {t}: trials.csv metric {crow['metric']} != {row['metric']}")
        history = {h["rung"]: h for h in row["history"]}
        mine = {r["rung"]: r for r in read_jsonl(os.path.join(sweep_dir, "trials", f"{t:04d}", "metrics.jsonl"))}
        ours = {i: e for (tt, i), e in evals.items() if tt == t}
        check(set(history) == set(ours) == set(mine), f"trial {t}: rungs {sorted(history)} / {sorted(mine)} / state {sorted(ours)}")
        epochs_log = trainer_metrics(sweep_dir, t)
        for i, e in ours.items():
            if i in history:
                check(history[i]["metric"] == e["metric"] and history[i]["epochs"] == e["epochs"],
                      f"trial {t} rung {i}: trials.jsonl history {history[i]} != state.json {e}")
            if i in mine:
                check(mine[i].get(METRIC) == e["metric"] and mine[i]["epochs"] == e["epochs"],
                      f"trial {t} rung {i}: trials/{t:04d}/metrics.jsonl {mine[i]} != state.json {e}")
            rec = epochs_log.get(e["epochs"])
            if check(rec is not None, f"trial {t}: no epoch {e['epochs']} in its trainer metrics.jsonl"):
                check(abs(rec[METRIC] - e["metric"]) <= PRINT_TOL,
                      f"trial {t} rung {i}: sweep metric {e['metric']!r} != trainer {METRIC} {rec[METRIC]} at epoch {e['epochs']}")
        last = max(ours) if ours else -1
        check(row["rung"] == last and (last < 0 or row["metric"] == ours[last]["metric"]),
              f"trial {t}: leaderboard shows rung {row['rung']}, last evaluated rung is {last}")
    order = sorted(rows, key=lambda r: (-r["epochs"], -r["metric"], r["trial"]))
    check([r["trial"] for r in order] == [r["trial"] for r in rows], "leaderboard not sorted by (epochs, metric, id)")
    best = rows[0]
    top = max(r["metric"] for r in rows if r["epochs"] == MAX_RESOURCE)
    check(best["epochs"] == MAX_RESOURCE and best["metric"] == top, f"rank 1 {best} is not the best at {MAX_RESOURCE} epochs")
    check(best["status"] == "finished", f"rank 1 status {best['status']}")
    return best, rows


def yaml_scalar(text, key):
    """The value of a top-level `key: value` line of an effective config (written by simtune)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return None


def check_rerun(sweep_dir, row, config, name, extra):
    """Train `config` from scratch into runs/<name> and compare it epoch by epoch with trial
    row["trial"]'s own run (trained by the sweep, resumed at each promotion)."""
    p = run([BIN, "train", "--config", config, *extra], f"train --config {os.path.relpath(config, WORK)}", 600)
    if not check(p.returncode == 0, f"simtune train --config {config} exits 0"):
        return
    rerun = {r["epoch"]: r for r in read_jsonl(os.path.join(WORK, "runs", name, "metrics.jsonl"))}
    trial = trainer_metrics(sweep_dir, row["trial"])
    check(sorted(rerun) == list(range(1, row["epochs"] + 1)), f"{name}: rerun epochs {sorted(rerun)}")
    # Deterministic training: the same seed gives the same bits, so every logged number must be
    # equal as printed (train/loss and lr with 9 significant digits, metrics with 6 decimals).
    for epoch in sorted(rerun):
        for key in ("lr", "train/loss", "val/hit@1", METRIC):
            a, b = trial.get(epoch, {}).get(key), rerun[epoch].get(key)
            check(a == b, f"{name}: epoch {epoch} {key}: trial {row['trial']} logged {a}, the rerun {b}")
    final = rerun.get(row["epochs"], {}).get(METRIC, math.nan)
    check(abs(final - row["metric"]) <= PRINT_TOL,
          f"{name}: rerun {METRIC} {final} != trial {row['trial']}'s {row['metric']!r} (to the 6 printed decimals)")


def check_best_and_resumed(sweep_dir, best, rows):
    """best.yaml reproduces the leader; a promoted (resumed) trial, when it is not the leader,
    is also retrained in one piece, so resume == uninterrupted is always checked."""
    with open(os.path.join(sweep_dir, "best.yaml")) as f:
        best_yaml = f.read()
    check(yaml_scalar(best_yaml, "epochs") == str(best["epochs"]), f"best.yaml epochs != leader's {best['epochs']}")
    check(yaml_scalar(best_yaml, "seed") == str(best["seed"]), f"best.yaml seed != leader's seed {best['seed']}")
    check_rerun(sweep_dir, best, os.path.join(sweep_dir, "best.yaml"), "best", [])
    resumed = [r for r in rows if len(r["history"]) > 1]
    check(len(resumed) == 1, f"{len(resumed)} promoted trials, the plan promotes 1")
    for r in resumed:
        if r["trial"] != best["trial"]:
            config = os.path.join(sweep_dir, "trials", f"{r['trial']:04d}", "config.yaml")
            name = f"trial{r['trial']:04d}"
            check_rerun(sweep_dir, r, config, name, ["--set", "output.dir=runs", "--name", name])


def check_stopped_pruned(sweep_dir, rows):
    for r in rows:
        run_dir = os.path.join(sweep_dir, "trials", f"{r['trial']:04d}", "checkpoints")
        h5 = [n for n in os.listdir(run_dir) if n.endswith(".h5")]
        if r["status"] == "stopped":
            check(not h5, f"stopped trial {r['trial']} still holds {h5}")
            check(all(os.path.exists(os.path.join(run_dir, n)) for n in ("config.yaml", "metrics.jsonl")),
                  f"stopped trial {r['trial']} lost its config or metrics")
        else:
            check(h5, f"{r['status']} trial {r['trial']} has no checkpoint left")
    check(any(r["status"] == "stopped" for r in rows), "the plan stops 2 trials")
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(sweep_dir) for n in names)
    print(f"sweep folder: {total / 1e6:.0f} MB after the sweep (stopped trials' checkpoints removed)")


def check_png(path):
    with open(path, "rb") as f:
        head = f.read(24)
    ok = check(head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG")
    if ok:
        width, height = struct.unpack(">II", head[16:24])
        check(width > 0 and height > 0, f"{path}: {width}x{height}")


def main():
    t_start = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    p = run([MAKE_SYNTHETIC, os.path.join(WORK, "data"), "6", "12", "40", "40", "0", "0", "0"], "make_synthetic", 120)
    if p.returncode != 0:
        return 1
    write("base.yaml", BASE_YAML)
    write("sweep.yaml", SWEEP_YAML)
    p = run([BIN, "sweep", "--config", "sweep.yaml"], "sweep", 900)
    sweep_dir = os.path.join(WORK, "out", "sweep")
    if not check(p.returncode == 0, "simtune sweep exits 0"):
        return 1
    check("sweep finished" in p.stdout, "sweep prints its closing summary")
    plan = check_plan(sweep_dir)
    with open(os.path.join(sweep_dir, "state.json")) as f:
        state = json.load(f)
    evals = check_state(plan, state)
    best, rows = check_leaderboard(sweep_dir, evals, plan["n_trials"])
    check_png(os.path.join(sweep_dir, "curves.png"))
    check_best_and_resumed(sweep_dir, best, rows)
    check_stopped_pruned(sweep_dir, rows)
    # WORK holds ~0.5 GB of checkpoints: removed when everything passed
    return testlib.finish("sweep_e2e", [WORK], f"{time.monotonic() - t_start:.1f} s in all")


if __name__ == "__main__":
    sys.exit(main())
