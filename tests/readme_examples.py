#!/usr/bin/env python3
"""readme_examples.py: every command of README's "One example per command" block, run as written.

The commands run in a scratch folder laid out like the repository root: configs/ (a link to the
source's) with ../shared beside it, and the inputs the examples name made first: photos/ and
queries/ (class trees of ORL faces), q.jpg, and run/ (the folder of the train example's run).
Lines that train get size overrides appended (SMALL: one epoch at 32 px on ORL), and the
benchmark line fewer steps; nothing else is changed, so a README example that no longer parses,
names a missing option or writes nothing fails here. The train --resume line names a dated run
folder: the folder the train line actually made is put in its place, which also checks that
the README's name pattern (<config name>-<date>-<time>) is what the trainer writes.
`simtune sweep --config configs/sweep_example.yaml` runs a whole sweep: tests/sweep_examples.py
runs it with small sizes; here it only has to pass --dry-run. A README line that this file does
not know fails the test, so a new example cannot go untested.

Exit 77 when the oracles (PIL) or the shared data are missing, unless SIMTUNE_REQUIRE_ORACLES=1.
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, SHARED, SRC, check

try:
    from PIL import Image
except ImportError as e:
    testlib.missing_oracle("readme_examples.py", e)

ORL = os.path.join(SHARED, "datasets", "orl_faces")
WORK = os.path.abspath("readme_examples")
ROOT = os.path.join(WORK, "repo")  # the cwd of every example, like the repository root

SMALL_TRAIN = ["--set", "epochs=1", "--set", "model.image_size=32", "--set", "schedule.warmup_epochs=0",
               "--set", "data.train=[{path: orl, name: devices}]"]
SMALL_BENCH = ["--steps", "2", "--warmup", "1"]


def readme_commands():
    """The `simtune ...` lines of the "One example per command" block, comments dropped."""
    text = open(os.path.join(SRC, "README.md"), encoding="utf-8").read()
    block = re.search(r"## One example per command\s+```sh\n(.*?)```", text, re.S)
    if not block:
        return []
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines()
            if line.startswith("simtune ")]


def make_inputs():
    """photos/ and queries/: 5 people, 6 and 4 images each (PNG links); q.jpg; orl/: 10 people."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(ROOT)
    os.symlink(os.path.join(SRC, "configs"), os.path.join(ROOT, "configs"))
    os.symlink(SHARED, os.path.join(WORK, "shared"))  # configs/../../shared, as in the checkout
    for folder, images in (("photos", range(1, 7)), ("queries", range(7, 11))):
        for person in range(1, 6):
            os.makedirs(os.path.join(ROOT, folder, f"s{person}"))
            for i in images:
                os.symlink(os.path.join(ORL, f"s{person}", f"{i}.png"),
                           os.path.join(ROOT, folder, f"s{person}", f"{i}.png"))
    os.makedirs(os.path.join(ROOT, "orl"))
    for person in range(1, 11):
        os.symlink(os.path.join(ORL, f"s{person}"), os.path.join(ROOT, "orl", f"s{person}"))
    Image.open(os.path.join(ORL, "s3", "10.png")).convert("RGB").save(os.path.join(ROOT, "q.jpg"), quality=90)


def run(args, what):
    p = subprocess.run([BIN] + args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    ok = check(p.returncode == 0, f"{what}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return p if ok else None


def parses_as_json(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def run_example(cmd):
    """Run one README line (cmd without 'simtune'); True when this file knows the line."""
    line = "simtune " + " ".join(cmd)
    name = cmd[0]
    if name == "train" and "--config" in cmd:
        if run(cmd + SMALL_TRAIN, line):
            runs = sorted(glob.glob(os.path.join(ROOT, "checkpoints", "device_manuals-*-*")))
            if check(len(runs) == 1, f"{line}: expected one checkpoints/device_manuals-<date>-<time>, got {runs}"):
                check(os.path.isfile(os.path.join(runs[0], "best_weights.h5")), f"{line}: no best_weights.h5")
                os.symlink(runs[0], os.path.join(ROOT, "run"))
        return True
    if name == "train" and "--resume" in cmd:
        runs = glob.glob(os.path.join(ROOT, "checkpoints", "device_manuals-*-*"))
        check(re.fullmatch(r"checkpoints/device_manuals-\d{8}-\d{6}", cmd[cmd.index("--resume") + 1]) is not None,
              f"{line}: the README's run folder does not follow the trainer's naming")
        if runs:
            cmd = [runs[0] if a.startswith("checkpoints/device_manuals-") else a for a in cmd]
            run(cmd, line)
        return True
    if name == "sweep":
        args = cmd if "--dry-run" in cmd else cmd + ["--dry-run"]  # the full sweep: sweep_examples.py
        p = run(args, line)
        if p and "--json" in cmd:
            check(parses_as_json(p.stdout), f"{line}: stdout is not JSON")
        return True
    if name == "embed":
        run(["embed", "--weights", "run/best_weights.h5", "--images", "queries/", "--out", "queries.h5"],
            "embed of queries/ (input of the topk example)")
        if run(cmd, line):
            check(os.path.isfile(os.path.join(ROOT, cmd[cmd.index("--out") + 1])), f"{line}: no output file")
        return True
    if name in ("topk", "eval"):
        if run(cmd, line):
            out = os.path.join(ROOT, cmd[cmd.index("--out") + 1])
            check(os.path.exists(out) and (os.path.isfile(out) or os.listdir(out)), f"{line}: wrote nothing")
        return True
    if name == "search":
        if run(cmd, line):
            page = open(os.path.join(ROOT, cmd[cmd.index("--html") + 1]), encoding="utf-8").read()
            check(page.count("<img") >= 6, f"{line}: the page shows fewer than the query and 5 results")
        return True
    if name == "inspect":
        p = run(cmd, line)
        check(p is None or parses_as_json(p.stdout), f"{line}: stdout is not JSON")
        return True
    if name == "bench":
        p = run(cmd + SMALL_BENCH, line)
        check(p is None or parses_as_json(p.stdout.strip().splitlines()[-1]), f"{line}: no JSON object last")
        return True
    if name == "doctor":
        run(cmd, line)
        return True
    return False


def main():
    if not BIN or not os.path.isdir(ORL):
        testlib.missing_oracle("readme_examples.py", "needs SIMTUNE_BIN and the ORL data")
    commands = readme_commands()
    check(len(commands) >= 10, f"found only {len(commands)} commands in README's example block")
    make_inputs()
    for cmd in commands:
        check(run_example(cmd[1:]), f"README example not covered by this test: {' '.join(cmd)}")
    return testlib.finish("readme_examples", [WORK], f"{len(commands)} README commands")


if __name__ == "__main__":
    sys.exit(main())
