"""sweep_workers.py: one sweep folder worked on by several processes (train/sweep.h "Workers",
docs/config.md "Several workers"), through the CLI as a user runs it.

    sweep_workers.py MAKE_SYNTHETIC      (env SIMTUNE_BIN: the simtune binary; ctest sets it)

The sweep: tv_resnet18 at 32 px, plain SGD (small checkpoints), on a generated 6-class dataset;
R = 2, eta = 2: bracket 1 trains 2 trials x 1 epoch -> 1 x 2 epochs, bracket 2 trains 2 x 2
epochs (4 trials, 5 evaluations). Training is deterministic for a given seed, so every
scheduling of the same synchronous sweep must give the same trials.csv byte for byte.
  - reference: one process (`--config`);
  - two workers (`--config --worker`, started together): both exit 0, both trained something,
    trials.csv and the evaluations equal the reference;
  - `mpirun -np 2` (OpenMPI, --oversubscribe): the same, and the closing summary once (rank 0);
  - a worker killed with SIGKILL while it trains a 2-epoch evaluation, after its epoch-1
    checkpoint: the other worker takes the claim over (progress line, state.json `requeues`
    naming the dead pid, closing summary), the trainer resumes the trial at epoch 1, and the
    leaderboard equals the reference;
  - kill -9 of both workers mid-sweep, then `--resume`: every evaluation finished before the
    kill is kept with its metric, only the others are trained, and the leaderboard equals the
    reference;
  - `scheduler: asha` with two workers: every trial evaluated, every rung's final best
    floor(n / eta) trials promoted, nothing left pending or running;
  - a single process next to a live worker, and a worker next to a single process, exit 1
    naming the other; a worker whose sweep file differs from the folder's is refused naming what
    differs; a worker then finishes the folder of the killed single process.
Wall time 68-102 s on 2 loaded cores (label slow).
"""
import csv
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import testlib
from testlib import BIN, check

MAKE_SYNTHETIC, = testlib.inputs(["MAKE_SYNTHETIC"])
WORK = os.path.abspath("sweep_workers_work")
HOST = socket.gethostname()
EVALUATIONS = 5  # bracket 1: 2 + 1, bracket 2: 2

BASE_YAML = """\
model: {arch: tv_resnet18, weights: null, image_size: 32, pool: avg, embed_dim: 16}
data:
  train: [{path: data, name: synth}]
  val_fraction: 0.3
  sampler: pk
  pk: {p: 3, k: 4}
  workers: 1
loss: {type: triplet}
optimizer: {type: sgd, lr: 1.0e-2, momentum: 0}
epochs: 2
seed: 0
device: cpu
threads: 1
validation: {every: 1, metrics: [map@10]}
output: {dir: runs, name: base, keep_last: 1, save_best: false}
"""

SWEEP_YAML = """\
base: base.yaml
seed: 3
hyperband: {max_resource: 2, eta: 2}
parameters:
  optimizer.lr: {distribution: log_uniform, min: 1.0e-3, max: 1.0e-1}
"""


def sweep_args(folder, *extra):
    return ["sweep", "--config", "sweep.yaml", "--set", f"dir={folder}", *extra]


def run(args, timeout=300):
    p = subprocess.run([BIN, *args], cwd=WORK, capture_output=True, text=True, timeout=timeout)
    print(f"simtune {' '.join(args)}: exit {p.returncode}", flush=True)
    if p.returncode != 0:
        print(p.stdout[-2000:], p.stderr[-2000:], sep="\n", file=sys.stderr)
    return p


def start(args):
    return subprocess.Popen([BIN, *args], cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, what, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    print(f"{what}: exit {proc.returncode}", flush=True)
    if proc.returncode not in (0, -signal.SIGKILL):
        print(out[-2000:], err[-2000:], sep="\n", file=sys.stderr)
    return proc.returncode, out, err


def read_state(folder):
    """state.json, or None while it is being created (written by rename: never half a file)."""
    try:
        with open(os.path.join(WORK, folder, "state.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def evaluations(state):
    return {(e["trial"], e["rung"]): e["metric"] for e in state["evaluations"]}


def leaderboard(folder):
    with open(os.path.join(WORK, folder, "trials.csv")) as f:
        return f.read()


def wait_for(what, cond, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.01)
    check(False, f"timed out waiting for {what}")
    return None


def trained(out):
    """(trial, rung) pairs a process's progress says it trained."""
    return [(int(t), int(r) - 1) for t, r in re.findall(r"trial (\d{4}): bracket \d+ rung (\d+)/", out)]


def check_same(folder, ref, what):
    check(leaderboard(folder) == ref["csv"], f"{what}: trials.csv differs from one process's:\n{leaderboard(folder)}")
    state = read_state(folder)
    check(evaluations(state) == ref["evals"], f"{what}: evaluations {evaluations(state)} != {ref['evals']}")
    check(state["claims"] == [], f"{what}: claims left: {state['claims']}")


def test_two_workers(ref):
    procs = [start(sweep_args("two", "--worker")) for _ in range(2)]
    results = [finish(p, f"worker {i + 1} of 2") for i, p in enumerate(procs)]
    for i, (rc, out, _) in enumerate(results):
        check(rc == 0 and "sweep finished" in out, f"worker {i + 1}: exit {rc}")
        check(trained(out), f"worker {i + 1} trained nothing: the sweep was not spread")
    together = sorted(sum((trained(out) for _, out, _ in results), []))
    check(together == sorted(ref["evals"]), f"the workers trained {together}: each evaluation once")
    check_same("two", ref, "two workers")


def test_mpirun(ref):
    mpirun = shutil.which("mpirun")
    if not check(mpirun is not None, "mpirun not found (OpenMPI: apt-get install openmpi-bin)"):
        return
    p = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", BIN, *sweep_args("mpi")],
                       cwd=WORK, capture_output=True, text=True, timeout=300)
    print(f"mpirun -np 2 simtune sweep: exit {p.returncode}", flush=True)
    if not check(p.returncode == 0, f"mpirun -np 2: exit {p.returncode}: {p.stderr[-2000:]}"):
        return
    check(p.stdout.count("sweep finished") == 1, "mpirun: the closing summary is rank 0's alone")
    check(len(set(re.findall(r"worker pid (\d+) on host", p.stdout))) == 2, "mpirun: two ranks, two workers")
    check_same("mpi", ref, "mpirun -np 2")


def claim_with_checkpoint(folder, pids):
    """A claim of a 2-epoch rung-0 evaluation (bracket 2) by one of pids whose trial has its
    epoch-1 checkpoint on disk: (claim, pid)."""
    state = read_state(folder)
    for c in state["claims"] if state else []:
        ckpts = glob.glob(os.path.join(WORK, folder, "trials", f"{c['trial']:04d}", "checkpoints", "ckpt-*.h5"))
        if c["trial"] >= 2 and c["pid"] in pids and ckpts:
            return c
    return None


def test_worker_killed(ref):
    procs = {p.pid: p for p in (start(sweep_args("killed", "--worker")) for _ in range(2))}
    victim_claim = wait_for("a worker mid-way through a 2-epoch evaluation",
                            lambda: claim_with_checkpoint("killed", set(procs)))
    if not victim_claim:
        for p in procs.values():
            p.kill()
            p.communicate()
        return
    victim = procs.pop(victim_claim["pid"])
    victim.send_signal(signal.SIGKILL)
    finish(victim, "the killed worker")
    (survivor,) = procs.values()
    rc, out, _ = finish(survivor, "the surviving worker")
    t = victim_claim["trial"]
    check(rc == 0 and "sweep finished" in out, f"the surviving worker: exit {rc}")
    check(f"trial {t:04d} rung 0: re-queued: pid {victim.pid} on host {HOST}" in out,
          f"no re-queue of trial {t} in the survivor's progress")
    check(re.search(rf"resumed from \S*trials/{t:04d}/checkpoints/ckpt-\d+\.h5: epoch 1,", out),
          f"trial {t} did not continue from the dead worker's epoch-1 checkpoint")
    check(f"re-queued: 1 evaluation(s) whose worker died" in out, "the closing summary lists the re-queue")
    requeues = read_state("killed")["requeues"]
    check(len(requeues) == 1 and requeues[0]["pid"] == victim.pid and requeues[0]["trial"] == t
          and requeues[0]["by_pid"] == survivor.pid, f"state.json requeues: {requeues}")
    check_same("killed", ref, "a worker killed mid-trial")


def test_all_killed_then_resume(ref):
    procs = [start(sweep_args("all", "--worker")) for _ in range(2)]
    wait_for("2 finished evaluations and 1 in flight", lambda: (lambda s: s and len(s["evaluations"]) >= 2
                                                                and s["claims"])(read_state("all")))
    for p in procs:
        p.send_signal(signal.SIGKILL)
        finish(p, "a worker killed with the others")
    before = read_state("all")
    done = evaluations(before)
    p = run(["sweep", "--resume", "all"])
    if not check(p.returncode == 0 and "sweep finished" in p.stdout, f"--resume after kill -9 of all: exit {p.returncode}"):
        return
    after = evaluations(read_state("all"))
    check(all(after.get(k) == v for k, v in done.items()), f"finished evaluations changed: {done} -> {after}")
    redone = trained(p.stdout)
    check(len(redone) == EVALUATIONS - len(done) and not set(redone) & set(done),
          f"--resume trained {redone}; finished before the kill: {sorted(done)}")
    check(p.stdout.count(": re-queued: ") == len(before["claims"]), "each claim of the killed workers re-queued")
    check_same("all", ref, "kill -9 of all + --resume")


def test_asha():
    procs = [start(sweep_args("asha", "--worker", "--set", "scheduler=asha")) for _ in range(2)]
    outs = []
    for i, p in enumerate(procs):
        rc, out, _ = finish(p, f"asha worker {i + 1}")
        check(rc == 0 and "scheduler asha" in out, f"asha worker {i + 1}: exit {rc}")
        outs.append(out)
    with open(os.path.join(WORK, "asha", "plan.json")) as f:
        plan = json.load(f)
    evals = evaluations(read_state("asha"))
    # promoted trials continue: a trial's epochs are those of its last evaluated rung
    epochs = {b["first_trial"] + k: 0 for b in plan["brackets"] for k in range(b["rungs"][0]["n"])}
    for b in plan["brackets"]:
        for (t, i) in evals:
            if t in range(b["first_trial"], b["first_trial"] + b["rungs"][0]["n"]):
                epochs[t] = max(epochs[t], b["rungs"][i]["r"])
    want = f"sweep finished: 4 trials, {sum(epochs.values())} epochs trained (continued)"
    check(all(want in out for out in outs), f"asha summaries do not say {want!r}")
    with open(os.path.join(WORK, "asha", "trials.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    check(all(r["status"] in ("finished", "stopped") for r in rows), f"asha statuses {[r['status'] for r in rows]}")
    for b in plan["brackets"]:
        trials = range(b["first_trial"], b["first_trial"] + b["rungs"][0]["n"])
        check(all((t, 0) in evals for t in trials), f"asha bracket s={b['s']}: a trial never evaluated")
        for i in range(len(b["rungs"]) - 1):
            done = sorted((t for t in trials if (t, i) in evals), key=lambda t: (-evals[(t, i)], t))
            best = done[: len(done) // plan["eta"]]
            check(best and all((t, i + 1) in evals for t in best),
                  f"asha bracket s={b['s']} rung {i}: best {best} of {done} not all promoted")
            check(all((t, i) in evals for t in trials if (t, i + 1) in evals), "asha: a promotion skipped a rung")


def test_refusals(ref):
    worker = start(sweep_args("owned", "--worker"))
    if wait_for("the worker's registration", lambda: glob.glob(os.path.join(WORK, "owned", "workers", "*.lock"))
                and read_state("owned")):
        want = f"owned is worked on by 1 worker(s): pid {worker.pid} on host {HOST} since "
        for args in (["sweep", "--resume", "owned"], sweep_args("owned")):
            p = run(args)
            check(p.returncode == 1 and want in p.stderr and "--worker owned" in p.stderr,
                  f"a single process next to a worker: exit {p.returncode}: {p.stderr.strip()!r}")
        p = run(sweep_args("owned", "--worker", "--set", "seed=4"))
        check(p.returncode == 1 and "owned holds a different sweep: its trial 0's train config differs" in p.stderr,
              f"a worker with another sweep file: exit {p.returncode}: {p.stderr.strip()!r}")
    worker.kill()
    finish(worker, "the worker")

    single = start(sweep_args("plain"))
    if wait_for("the single process's lock", lambda: os.path.exists(os.path.join(WORK, "plain", ".lock"))
                and read_state("plain")):
        p = run(["sweep", "--worker", "plain"])
        want = f"plain is in use by pid {single.pid} on host {HOST} since "
        check(p.returncode == 1 and want in p.stderr and "workers cannot join it" in p.stderr,
              f"a worker next to a single process: exit {p.returncode}: {p.stderr.strip()!r}")
    single.kill()
    finish(single, "the single process (killed)")
    p = run(["sweep", "--worker", "plain"])
    check(p.returncode == 0 and "sweep finished" in p.stdout, f"a worker after the single process died: exit {p.returncode}")
    check_same("plain", ref, "a worker finishing a killed single process's sweep")


def main():
    t0 = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    p = subprocess.run([MAKE_SYNTHETIC, os.path.join(WORK, "data"), "6", "12", "40", "40", "0", "0", "0"],
                       capture_output=True, text=True, timeout=120)
    if not check(p.returncode == 0, f"make_synthetic: {p.stderr}"):
        return 1
    for name, text in (("base.yaml", BASE_YAML), ("sweep.yaml", SWEEP_YAML)):
        with open(os.path.join(WORK, name), "w") as f:
            f.write(text)
    p = run(sweep_args("one"))
    if not check(p.returncode == 0, "the reference sweep (one process) exits 0"):
        return testlib.finish("sweep_workers", [WORK])
    ref = {"csv": leaderboard("one"), "evals": evaluations(read_state("one"))}
    check(len(ref["evals"]) == EVALUATIONS, f"the reference made {len(ref['evals'])} evaluations")
    check(len(list(csv.DictReader(ref["csv"].splitlines()))) == 4, "the reference leaderboard lists 4 trials")
    test_two_workers(ref)
    test_mpirun(ref)
    test_worker_killed(ref)
    test_all_killed_then_resume(ref)
    test_asha()
    test_refusals(ref)
    return testlib.finish("sweep_workers", [WORK], f"{time.monotonic() - t0:.1f} s in all")


if __name__ == "__main__":
    sys.exit(main())
