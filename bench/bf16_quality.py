#!/usr/bin/env python3
"""bf16_quality.py: does bf16 training cost retrieval quality? (issue 16 item 3)

Fine-tunes configs/train_orl_triplet.yaml (ORL faces, read in place from ../shared/datasets,
open-set: 10 people held out) with `simtune train` once per seed and precision, and reports
the held-out val/map@10 of each run's last epoch, then mean and spread (sample standard
deviation, min..max) per precision and the bf16 - fp32 difference of the means. The same seed
gives both precisions the same split, initialisation and batches, so the difference is the
arithmetic's. Every run is the user's path: the binary, the config, --precision.

The config's full budget (27 epochs at 112 px) takes hours on a 2-core machine; --epochs and
--image-size shrink it (the defaults below are the small budget docs/benchmarks.md records;
epochs is set as the config key, so warmup and the cosine schedule fit the shorter run).
Early stopping is off (patience 0 keeps it off) and the metric is read from the last epoch, so
every run trains the same number of steps.

  bench/bf16_quality.py --simtune build/simtune [--seeds 0 1 2] [--epochs 2] [--image-size 64]
                        [--threads 2] [--work DIR] [--json OUT]
Exit 0 with the table on stdout; 1 when a run fails (its stderr is shown).
Used by: docs/benchmarks.md ("bf16 retrieval quality"). Not a ctest (minutes to hours).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "train_orl_triplet.yaml")
METRIC = "val/map@10"


def train_once(args, work, precision, seed):
    """One run; returns the last epoch's METRIC."""
    name = f"{precision}-seed{seed}"
    cmd = [args.simtune, "train", "--config", CONFIG, "--name", name,
           "--precision", precision, "--threads", str(args.threads),
           "--set", f"epochs={args.epochs}", "--set", f"seed={seed}", "--set", f"model.image_size={args.image_size}",
           "--set", f"output.dir={work}", "--set", "output.keep_last=1",
           "--set", "output.save_best=false", "--set", "device=cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)}\nexit {run.returncode}\n{run.stderr}")
        raise SystemExit(1)
    with open(os.path.join(work, name, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    value = lines[-1].get(METRIC)
    if value is None:
        raise SystemExit(f"{name}: metrics.jsonl has no {METRIC}")
    return value


def summary(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"runs": values, "mean": statistics.mean(values), "sd": sd,
            "min": min(values), "max": max(values)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--simtune", default=os.path.join(ROOT, "build", "simtune"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="folder for the run folders (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bf16_quality.") as tmp:
        work = args.work or tmp
        results = {}
        for precision in ("fp32", "bf16"):
            values = []
            for seed in args.seeds:  # one precision after the other, same seeds
                values.append(train_once(args, work, precision, seed))
                print(f"{precision} seed {seed}: {METRIC} {values[-1]:.4f}", flush=True)
            results[precision] = summary(values)
    for precision, r in results.items():
        print(f"{precision}: mean {r['mean']:.4f} sd {r['sd']:.4f} "
              f"range {r['min']:.4f}..{r['max']:.4f} over seeds {args.seeds}")
    diff = results["bf16"]["mean"] - results["fp32"]["mean"]
    print(f"bf16 - fp32 mean: {diff:+.4f} ({args.epochs} epochs, {args.image_size} px)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"metric": METRIC, "epochs": args.epochs, "image_size": args.image_size,
                       "seeds": args.seeds, "results": results, "bf16_minus_fp32": diff}, f,
                      indent=1)


if __name__ == "__main__":
    main()
