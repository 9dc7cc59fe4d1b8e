#!/usr/bin/env python3
"""demo_quick.py WORKDIR: run `simtune demo --quick` and check what it promises.

Checks: exit 0; the base model was exported as a Keras-layout HDF5 file and inspected; the
fine-tune and sweep ran (metrics.jsonl with val/map@10 per epoch, a sweep leaderboard and
best.yaml); both embedding files and evaluation reports exist with hit@1 and map@10 in [0, 1];
report.html shows the numbers of both reports and links the contact sheets, which exist.
Standard library only. The folder is removed when every check passes.
"""
import json
import os
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, check


def main():
    work = testlib.inputs(["WORKDIR"])[0]
    out = os.path.join(work, "demo")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run = subprocess.run([BIN, "demo", "--quick", "--threads", "2", "--out", out],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(run.stdout[-4000:])
    check(run.returncode == 0, f"simtune demo --quick exited {run.returncode}")
    check("open " in run.stdout and "report.html" in run.stdout, "the demo tells the user what to open")
    for rel in ["runs/base/best_weights.h5", "runs/finetune/best_weights.h5", "runs/finetune/metrics.jsonl",
                "runs/finetune/curves.png", "sweep/trials.csv", "sweep/best.yaml", "embeddings/base.h5",
                "embeddings/finetuned.h5", "eval/base/index.html", "eval/finetuned/index.html",
                "configs/finetune.yaml", "report.html"]:
        check(os.path.exists(os.path.join(out, rel)), f"{rel} exists")
    check("HDF5" in run.stdout or "keras" in run.stdout.lower(), "simtune inspect described the base weights")
    metrics_path = os.path.join(out, "runs/finetune/metrics.jsonl")
    if os.path.exists(metrics_path):
        lines = [json.loads(l) for l in open(metrics_path) if l.strip()]
        check(len(lines) == 2, f"fine-tune logged 2 epochs, got {len(lines)}")
        check(all("val/map@10" in l for l in lines), "every epoch has val/map@10")
    values = {}
    for label in ["base", "finetuned"]:
        path = os.path.join(out, "eval", label, "report.json")
        if not os.path.exists(path):
            check(False, f"eval/{label}/report.json exists")
            continue
        metrics = json.load(open(path))["metrics"]
        for name in ["hit@1", "map@10"]:
            check(0.0 <= metrics.get(name, -1) <= 1.0, f"{label} {name} in [0, 1]")
        values[label] = metrics
    report = os.path.join(out, "report.html")
    if os.path.exists(report) and len(values) == 2:
        html = open(report).read()
        for label in values:
            check(f"{values[label]['hit@1']:.3f}" in html, f"report.html shows {label} hit@1")
        check("eval/finetuned/index.html" in html, "report.html links the contact sheet")
    return testlib.finish("demo_quick", [work])


if __name__ == "__main__":
    sys.exit(main())
