"""sweep_examples.py: every `simtune sweep` example a user can copy runs as written.

The examples are read from where the user reads them, not copied here: the `--set` examples of
`simtune sweep --help`; the `simtune sweep` lines of README.md's code blocks and of the comments
of configs/sweep_example.yaml; the `--set` examples and the parameters YAML block of
docs/config.md's "Sweeps" section. Each `--set` example runs with `--dry-run` on the example
sweep and must have the effect this file expects of it (an example without an expectation
fails, so a new example gets one). The commands run as written, from a scratch folder (their
outputs land there) with `configs/...` meaning the repository's configs; the one that trains (`sweep --config configs/sweep_example.yaml`) gets
`--set` overrides that make it one trial of one epoch at 32 px ("small sizes"), then
`--resume` of its folder runs as written. Also: --dry-run refuses a trial whose weight file is
missing, and so does a real run, before any training; and a base config that sets
data.val_classes makes the sweep's metric the open-set validation (a one-trial sweep); and
`--set model.weights=null` (or `~`) is a null, for train and sweep alike.
Standard library only; ~20 s (one ORL epoch of tv_resnet18 at 32 px).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, SRC, check

testlib.inputs(env=("SIMTUNE_BIN", "SIMTUNE_SOURCE_DIR"))
WORK = os.path.abspath("sweep_examples_work")
EXAMPLE = "configs/sweep_example.yaml"
# one trial (max_resource 1: a single bracket of one 1-epoch trial), tv_resnet18 at 32 px
SMALL = ["--set", "hyperband.max_resource=1",
         "--set", "parameters.model={value: {arch: tv_resnet18, weights: null, image_size: 32}}"]

# What each documented --set does to the --dry-run table of the example sweep.
EFFECTS = {
    "hyperband.eta=3": lambda out: ", eta 3," in out,
    "hyperband.eta=4": lambda out: ", eta 4," in out,
    "keep_checkpoints=true": lambda out: "(checkpoints of stopped trials: kept, keep_checkpoints: true)" in out,
    "parameters.optimizer.lr.max=0.1": lambda out: re.search(r"^  optimizer\.lr +log_uniform \[1e-05, 0\.1\]$", out, re.M),
    "parameters.optimizer.type={value: sgd}": lambda out: re.search(r"^  optimizer\.type +value +sgd$", out, re.M),
    "parameters.model=null": lambda out: "  model.embed_dim" in out and not re.search(r"^  model ", out, re.M),
    "parameters.model.embed_dim.q=null": lambda out: re.search(r"^  model\.embed_dim +q_uniform +\[64, 256\] step 1$", out, re.M),
    "parameters.data.val_classes={value: 0.5}":
        lambda out: "validation: open-set, 0.5 of the classes held out (data.val_classes)" in out,
    "parameters=null": lambda out: "(none: every trial is the base config with its own seed)" in out,
    "scheduler=asha": lambda out: "scheduler: asha (a trial continues as soon as" in out,
}


def run(args, timeout=300):
    """simtune ARGS in WORK; README's `configs/...` paths are relative to the repository root."""
    args = [os.path.join(SRC, a) if a.startswith("configs/") else a for a in args]
    p = subprocess.run([BIN, *args], cwd=WORK, capture_output=True, text=True, timeout=timeout)
    print(f"simtune {shlex.join(args)}: exit {p.returncode}", flush=True)
    return p


def read(path):
    with open(os.path.join(SRC, path)) as f:
        return f.read()


def sweeps_section():
    text = read("docs/config.md")
    start = text.index("\n## Sweeps")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def help_sets():
    p = run(["sweep", "--help"])
    check(p.returncode == 0, "sweep --help exits 0")
    return [shlex.split(m)[0] for m in re.findall(r"--set ('[^']*'|\S+)", p.stdout) if m != "KEY=VALUE"]


def docs_sets(section):
    sets = [shlex.split(m)[0] for m in re.findall(r"`--set ([^`]*)`", section) if m != "KEY=VALUE"]
    table = section[section.index("| `--set` | effect |"):]
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        sets.append(shlex.split(re.match(r"\| `([^`]*)`", line).group(1))[0])
    return sets


def command_lines(text, prefix):
    """`simtune sweep ...` lines (comments dropped) of text, prefix stripped (a comment's '#')."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if prefix and line.startswith(prefix):
            line = line[len(prefix):].strip()
        if line.startswith("simtune sweep ") and "SWEEP" not in line:  # SWEEP.yaml: the synopsis
            out.append(shlex.split(line, comments=True)[1:])
    return out


def test_set_examples(sets):
    check(len(sets) >= 7, f"found only {len(sets)} --set examples in --help and docs/config.md")
    for s in sets:
        if not check(s in EFFECTS, f"example --set {s!r} has no expected effect in sweep_examples.py"):
            continue
        p = run(["sweep", "--config", EXAMPLE, "--set", s, "--dry-run"])
        if check(p.returncode == 0, f"--set {s!r}: exit {p.returncode}: {p.stderr.strip()}"):
            check(EFFECTS[s](p.stdout), f"--set {s!r}: not seen in the --dry-run table:\n{p.stdout[:1500]}")


def test_commands(commands):
    check(any(c == ["sweep", "--config", EXAMPLE] for c in commands), f"README runs the example sweep: {commands}")
    check(any(c[:2] == ["sweep", "--resume"] for c in commands), f"an example resumes a sweep: {commands}")
    unique = [c for i, c in enumerate(commands) if c not in commands[:i]]  # README and the yaml share some
    ordered = [c for c in unique if "--resume" not in c] + [c for c in unique if "--resume" in c]
    for args in ordered:
        trains = "--dry-run" not in args and "--resume" not in args
        p = run(args + SMALL if trains else args, timeout=600)
        if not check(p.returncode == 0, f"simtune {shlex.join(args)}: exit {p.returncode}: {p.stderr[-2000:]}"):
            continue
        if "--json" in args:
            check(isinstance(json.loads(p.stdout), list), "--dry-run --json prints one JSON array")
        if "--resume" in args or trains:
            check("sweep finished" in p.stdout, f"simtune {shlex.join(args)} finishes the sweep")


def test_docs_yaml(section):
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", section, re.S) if b.startswith("parameters:")]
    if not check(len(blocks) == 1, f"docs/config.md Sweeps: {len(blocks)} parameters YAML blocks"):
        return
    os.makedirs(os.path.join(WORK, "docs_example"), exist_ok=True)
    path = os.path.join(WORK, "docs_example", "sweep.yaml")
    with open(path, "w") as f:
        f.write(f"base: {os.path.join(SRC, 'configs', 'train_orl_triplet.yaml')}\n" + blocks[0])
    p = run(["sweep", "--config", path, "--dry-run"])
    check(p.returncode == 0, f"docs/config.md parameters block: exit {p.returncode}: {p.stderr.strip()}")
    for key in re.findall(r"^  ([a-z_.]+):", blocks[0], re.M):
        check(re.search(rf"^  {re.escape(key)} ", p.stdout, re.M), f"docs block parameter {key} not in the plan")


def test_missing_weights():
    """A weight file that does not exist fails --dry-run and a real run before any training."""
    path = os.path.join(WORK, "missing.yaml")
    with open(path, "w") as f:
        f.write(f"base: {os.path.join(SRC, 'configs', 'train_orl_triplet.yaml')}\n"
                "dir: missing_sweep\nhyperband: {max_resource: 9}\nparameters:\n"
                "  model: {values: [{arch: tv_resnet18, weights: null}, {arch: resnet50, weights: no_such.h5}]}\n")
    want = f"an input file of this trial is missing: model.weights: {os.path.join(WORK, 'no_such.h5')}: No such file"
    for args in (["--dry-run"], []):
        p = run(["sweep", "--config", path, *args])
        check(p.returncode == 1 and want in p.stderr and "trial " in p.stderr,
              f"missing weights {args}: exit {p.returncode}: {p.stderr.strip()!r}")
    check(not os.path.exists(os.path.join(WORK, "missing_sweep", "trials")), "a trial trained despite missing weights")


def test_open_set_objective():
    """A base config with data.val_classes: the sweep ranks trials by open-set validation."""
    base = os.path.join(WORK, "open_set", "base.yaml")
    os.makedirs(os.path.dirname(base), exist_ok=True)
    with open(os.path.join(SRC, "configs", "train_orl_triplet.yaml")) as f:
        text = f.read()
    text = text.replace("../../shared/datasets/orl_faces", os.path.join(SRC, "..", "shared", "datasets", "orl_faces"))
    text = re.sub(r"^  val_fraction: .*$", "  val_classes: 0.25       # 10 of the 40 people", text, flags=re.M)
    with open(base, "w") as f:
        f.write(text)
    sweep = os.path.join(WORK, "open_set", "sweep.yaml")
    with open(sweep, "w") as f:
        f.write("base: base.yaml\ndir: open_set_sweep\nhyperband: {max_resource: 1}\n"
                "parameters:\n  model: {value: {arch: tv_resnet18, image_size: 32}}\n")
    p = run(["sweep", "--config", sweep, "--dry-run"])
    check(p.returncode == 0 and "validation: open-set, 0.25 of the classes held out (data.val_classes)" in p.stdout,
          f"open-set base: --dry-run says {p.stdout[:400]!r} {p.stderr.strip()!r}")
    p = run(["sweep", "--config", sweep], timeout=600)
    if not check(p.returncode == 0, f"open-set sweep: exit {p.returncode}: {p.stderr[-2000:]}"):
        return
    check("validation: open-set" in p.stdout, "the trial's trainer validated open-set")
    with open(os.path.join(WORK, "open_set_sweep", "trials.jsonl")) as f:
        leader = json.loads(f.readline())
    with open(os.path.join(WORK, "open_set_sweep", "trials", "0000", "checkpoints", "metrics.jsonl")) as f:
        epoch1 = json.loads(f.readline())
    # metrics.jsonl prints 6 decimals: the exact metric rounded to 5e-7 (+1e-9 for the conversion)
    check(abs(leader["metric"] - epoch1["val/map@10"]) <= 5e-7 + 1e-9,
          f"sweep metric {leader['metric']} != the trial's open-set val/map@10 {epoch1['val/map@10']}")


def test_null_overrides():
    """--set KEY=null (or ~, or nothing) is YAML null in the shared --set parser, for train and sweep:
    it replaces a base's weight file (which here does not exist, so only a null passes)."""
    cfg = os.path.join(WORK, "null_base.yaml")
    with open(os.path.join(SRC, "configs", "train_orl_triplet.yaml")) as f:
        text = f.read().replace("../../shared/datasets/orl_faces", os.path.join(SRC, "..", "shared", "datasets", "orl_faces"))
    with open(cfg, "w") as f:
        f.write(re.sub(r"^  weights: .*$", "  weights: no_such.h5", text, flags=re.M))
    p = run(["train", "--config", cfg, "--check"])
    check(p.returncode == 1 and "no_such.h5" in p.stderr, f"the base's missing weights fail --check: {p.stderr.strip()!r}")
    for value in ("null", "~", ""):
        p = run(["train", "--config", cfg, "--set", f"model.weights={value}", "--check"])
        check(p.returncode == 0, f"train --set model.weights={value}: exit {p.returncode}: {p.stderr.strip()!r}")
    sweep = os.path.join(WORK, "null_sweep.yaml")
    with open(sweep, "w") as f:
        f.write("base: null_base.yaml\nhyperband: {max_resource: 3}\n")
    p = run(["sweep", "--config", sweep, "--set", "parameters.model.weights={value: ~}", "--dry-run"])
    check(p.returncode == 0, f"sweep --set parameters.model.weights={{value: ~}}: exit {p.returncode}: {p.stderr.strip()!r}")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    section = sweeps_section()
    test_set_examples(list(dict.fromkeys(help_sets() + docs_sets(section))))  # --help and docs share some
    test_docs_yaml(section)
    test_missing_weights()
    test_open_set_objective()
    test_null_overrides()
    commands = command_lines(read("README.md"), None) + command_lines(read(EXAMPLE), "#")
    test_commands(commands)
    return testlib.finish("sweep_examples", [WORK])


if __name__ == "__main__":
    sys.exit(main())
