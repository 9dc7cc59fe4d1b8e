"""sweep_dry_run.py: `simtune sweep --dry-run` from the command line.

Checks that --dry-run --json prints exactly one JSON array of brackets, each an array of rungs
{"n", "r"}, equal to an independent integer implementation of Hyperband (Li et al. 2018,
Algorithm 1 and Table 1; ../shared/docs/algorithms.md A.1-A.3), for the example sweep and
for --set overrides of the sweep file; and the exit codes and messages of bad input.
Needs only the standard library (json, subprocess), so any python3 runs it.
"""
import json
import os
import subprocess
import sys
import tempfile

import testlib
from testlib import BIN, SRC, check

testlib.inputs(env=("SIMTUNE_BIN", "SIMTUNE_SOURCE_DIR"))
EXAMPLE = os.path.join(SRC, "configs", "sweep_example.yaml")


def run(*args):
    p = subprocess.run([BIN, "sweep", *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def hyperband(R, eta, rounding, min_r=1, iterations=1):
    """Integer Hyperband: s_max by an integer loop, n by ceil (algorithm) or floor-first (paper)."""
    units, s_max, p = R // min_r, 0, eta
    while p <= units:
        p, s_max = p * eta, s_max + 1
    brackets = []
    for _ in range(iterations):
        for s in range(s_max, -1, -1):
            if rounding == "paper":
                n = (s_max + 1) // (s + 1) * eta ** s
            else:
                n = -(-(s_max + 1) * eta ** s // (s + 1))
            rungs = []
            for i in range(s + 1):
                r = -(-R * eta ** i // eta ** s)
                rungs.append({"n": n // eta ** i, "r": max(r, min_r)})
            brackets.append(rungs)
    return brackets


def plan_json(*sets):
    args = ["--config", EXAMPLE, "--dry-run", "--json"]
    for s in sets:
        args += ["--set", s]
    code, out, err = run(*args)
    check(code == 0, f"dry-run {sets} exit {code}: {err.strip()}")
    try:
        plan = json.loads(out)  # exactly one JSON document: extra output would make this fail
    except json.JSONDecodeError as e:
        check(False, f"dry-run {sets}: stdout is not one JSON value ({e}): {out[:200]!r}")
        return None
    check(isinstance(plan, list) and all(isinstance(b, list) for b in plan), "plan is an array of arrays")
    check(all(set(r) == {"n", "r"} for b in plan for r in b), "every rung is exactly {n, r}")
    return plan


# the example as written: R=27, eta=3, algorithm rounding
check(plan_json() == hyperband(27, 3, "algorithm"), "example plan (R=27, eta=3) differs from Algorithm 1")

# the paper's two tables for R=81, eta=3 (Table 1 as printed, and Algorithm 1)
table1 = [[{"n": 81, "r": 1}, {"n": 27, "r": 3}, {"n": 9, "r": 9}, {"n": 3, "r": 27}, {"n": 1, "r": 81}],
          [{"n": 27, "r": 3}, {"n": 9, "r": 9}, {"n": 3, "r": 27}, {"n": 1, "r": 81}],
          [{"n": 9, "r": 9}, {"n": 3, "r": 27}, {"n": 1, "r": 81}],
          [{"n": 6, "r": 27}, {"n": 2, "r": 81}],
          [{"n": 5, "r": 81}]]
check(plan_json("hyperband.max_resource=81", "hyperband.rounding=paper") == table1, "R=81 paper rounding != Table 1")
alg1 = plan_json("hyperband.max_resource=81", "hyperband.rounding=algorithm")
check(alg1 is not None and [b[0]["n"] for b in alg1] == [81, 34, 15, 8, 5], "R=81 Algorithm 1 bracket sizes")
check(alg1 == hyperband(81, 3, "algorithm"), "R=81 Algorithm 1 plan")
# float-log pitfalls: R=243 eta=3 has 6 brackets, R=1000 eta=10 has 4; R=100 rounds epochs up
check(len(plan_json("hyperband.max_resource=243") or []) == 6, "R=243 eta=3: s_max 5")
check(plan_json("hyperband.max_resource=1000", "hyperband.eta=10") == hyperband(1000, 10, "algorithm"), "R=1000 eta=10")
check(plan_json("hyperband.max_resource=100") == hyperband(100, 3, "algorithm"), "R=100: epochs rounded up")
check(plan_json("hyperband.max_resource=81", "hyperband.min_resource=3", "hyperband.iterations=2")
      == hyperband(81, 3, "algorithm", min_r=3, iterations=2), "min_resource 3, 2 iterations")

# the readable table
code, out, err = run("--config", EXAMPLE, "--dry-run")
check(code == 0 and "bracket" in out and "total:" in out and "parameters:" in out, f"table output: {err.strip()}")
check("optimizer.lr" in out and "log_uniform" in out, "table lists the parameters")

# same seed, same trials; another seed, other trials
_, out_a, _ = run("--config", EXAMPLE, "--dry-run", "--seed", "5")
_, out_b, _ = run("--config", EXAMPLE, "--dry-run", "--seed", "5")
_, out_c, _ = run("--config", EXAMPLE, "--dry-run", "--seed", "6")
trials = lambda text: text[text.find("first trials:"):]
check(trials(out_a) == trials(out_b) and trials(out_a) != trials(out_c), "--seed decides the sampled trials")

# usage errors exit 2; bad input exits 1 naming file, line and key
code, out, _ = run("--help")
check(code == 0 and "--dry-run" in out and "--resume" in out, "--help exits 0 and lists options")
check(run("--bogus")[0] == 2, "unknown option exits 2")
check(run("--dry-run")[0] == 2, "neither --config nor --resume exits 2")
check(run("--config", EXAMPLE, "--json")[0] == 2, "--json without --dry-run exits 2")
code, _, err = run("--config", EXAMPLE, "--dry-run", "--set", "hyperband.eta=1")
check(code == 1 and "hyperband.eta" in err and "out of range" in err, f"eta=1: exit {code}: {err.strip()}")
with tempfile.TemporaryDirectory() as tmp:
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write(f"base: {os.path.join(SRC, 'configs', 'train_orl_triplet.yaml')}\n"
                "parameters:\n  optimizer.lr: {values: [0.001, zero]}\n")
    code, _, err = run("--config", bad, "--dry-run")
    check(code == 1 and f"{bad}:3:34: optimizer.lr: expected a number" in err, f"bad value: exit {code}: {err.strip()}")
    code, _, err = run("--resume", tmp, "--dry-run")
    check(code == 1 and "not a sweep folder" in err, f"--resume of a non-sweep folder: {err.strip()}")

sys.exit(testlib.finish("sweep_dry_run"))
