#!/usr/bin/env python3
"""check_trec_eval.py: `simtune eval` against two independent oracles.

1. trec_eval semantics, reimplemented here (Debian ships no trec_eval package): read DIR/run.trec
   and DIR/qrels.txt, rank each topic by score descending with ties broken by docno in
   DESCENDING strcmp order (trec_eval's comp_sim_docno), ignore the rank column, and compute
   map and map_cut.k (AP over the top k divided by ALL relevant documents of the topic),
   averaged over topics present in both files. These must equal report.json's first split:
   map, map@1, map@5, map@10, map@100.
2. numpy brute force from the embedding file itself: leave-one-out inner product on small
   integer vectors (exact in float32 and float64, with duplicated rows so that exact ties
   occur), ranked by (score desc, row asc), self removed by index; hit@1, precision@10, map,
   map@r must equal report.json.

Usage: check_trec_eval.py CLI WORKDIR   (CLI: a program taking `eval ...` like `simtune eval`,
       i.e. the simtune binary; needs Debian's python3 with numpy, h5py)
Exit 77 when numpy/h5py are missing, unless SIMTUNE_REQUIRE_ORACLES=1.
"""
import json
import os
import subprocess
import sys

import testlib

try:
    import h5py
    import numpy as np
except ImportError as e:  # oracle missing
    testlib.missing_oracle("check_trec_eval.py", e)

# report.json prints 8 significant digits; the sums themselves are exact to ~1e-15
TOL = 1e-6
CUTOFFS = (1, 5, 10, 100)


def read_run(path):
    topics = {}
    with open(path) as f:
        for line in f:
            topic, _q0, docno, _rank, score, _tag = line.split()
            topics.setdefault(topic, []).append((float(score), docno))
    return topics


def read_qrels(path):
    rel = {}
    with open(path) as f:
        for line in f:
            topic, _iter, docno, judgement = line.split()
            if int(judgement) >= 1:
                rel.setdefault(topic, set()).add(docno)
    return rel


def trec_ap(ranked_docnos, relevant, cutoff=None):
    hits, total = 0, 0.0
    for i, docno in enumerate(ranked_docnos[:cutoff] if cutoff else ranked_docnos):
        if docno in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / len(relevant)


def trec_eval(run, qrels):
    """map and map_cut.k averaged over topics in both run and qrels."""
    out = {"map": [], **{f"map@{k}": [] for k in CUTOFFS}}
    for topic, docs in run.items():
        if topic not in qrels:
            continue
        # score descending, ties: docno descending (strcmp), as trec_eval sorts
        ranked = [d for _s, d in sorted(docs, key=lambda sd: (sd[0], sd[1]), reverse=True)]
        out["map"].append(trec_ap(ranked, qrels[topic]))
        for k in CUTOFFS:
            out[f"map@{k}"].append(trec_ap(ranked, qrels[topic], k))
    return {name: float(np.mean(v)) for name, v in out.items()}, len(out["map"])


def brute_force_loo(x, labels):
    """Leave-one-out inner product: hit@1, precision@10, map, map@r over queries with R > 0."""
    scores = x.astype(np.float64) @ x.astype(np.float64).T
    n = len(x)
    sums = {"hit@1": 0.0, "precision@10": 0.0, "map": 0.0, "map@r": 0.0}
    count = 0
    for q in range(n):
        others = np.array([j for j in range(n) if j != q])
        order = others[np.lexsort((others, -scores[q, others]))]  # score desc, row asc
        rel = (labels[order] == labels[q]) & (labels[q] >= 0)
        R = int(rel.sum())
        if R == 0:
            continue
        count += 1
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        sums["hit@1"] += float(rel[0])
        sums["precision@10"] += float(rel[:10].sum()) / 10
        sums["map"] += float((prec * rel).sum()) / R
        sums["map@r"] += float((prec[:R] * rel[:R]).sum()) / R
    return {k: v / count for k, v in sums.items()}, count


def write_embeddings(path, x, labels):
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=x.astype(np.float32))
        f.create_dataset("labels", data=labels.astype(np.int32))
        f.create_dataset("label_names", data=[f"class{c}" for c in range(labels.max() + 1)])
        f.create_dataset("paths", data=[f"img/{i:04d}.png" for i in range(len(x))])


def run_eval(simtune, args, out):
    cmd = [simtune, "eval", *args, "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr}")
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def compare(what, got, want, failures):
    for name, value in want.items():
        if abs(got[name] - value) > TOL:
            failures.append(f"{what}: {name} = {got[name]:.9f}, oracle {value:.9f}")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_trec_eval.py CLI WORKDIR")
    simtune, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(3)
    n, d, classes = 240, 8, 12
    labels = rng.integers(0, classes, n)
    labels[-4:] = -1  # unlabelled distractors
    centres = rng.integers(-3, 4, (classes, d))
    x = centres[np.maximum(labels, 0)] + rng.integers(-2, 3, (n, d))
    x[10:20] = x[0:10]  # exact duplicate rows: tied scores across rows
    labels[10:20] = labels[0:10]
    emb = os.path.join(work, "trec_embeddings.h5")
    write_embeddings(emb, x, labels)

    failures = []
    # leave-one-out, inner product: both oracles
    out = os.path.join(work, "trec_loo")
    report = run_eval(simtune, ["--embeddings", emb, "--protocol", "loo", "--metric", "ip", "-k", "10"], out)
    ours = report["per_split"][0]
    trec, topics = trec_eval(read_run(os.path.join(out, "run.trec")), read_qrels(os.path.join(out, "qrels.txt")))
    compare("loo vs trec_eval", ours, trec, failures)
    if topics != report["queries"]:
        failures.append(f"loo: trec_eval averages {topics} topics, report has {report['queries']} queries")
    brute, count = brute_force_loo(x, labels)
    compare("loo vs numpy brute force", ours, brute, failures)
    if count != report["queries"]:
        failures.append(f"loo: brute force evaluates {count} queries, report {report['queries']}")

    # a stratified split with cosine: trec_eval reproduces the first split
    out = os.path.join(work, "trec_split")
    report = run_eval(simtune, ["--embeddings", emb, "--splits", "3", "--seed", "5", "-k", "5"], out)
    trec, topics = trec_eval(read_run(os.path.join(out, "run.trec")), read_qrels(os.path.join(out, "qrels.txt")))
    compare("split vs trec_eval", report["per_split"][0], trec, failures)
    for name in ("topk.json", "index.html"):
        if not os.path.getsize(os.path.join(out, name)):
            failures.append(f"split: {name} is empty")
    with open(os.path.join(out, "topk.json")) as f:
        first = json.load(f)["queries"][0]
    if len(first["results"]) != 5 or not first["query"].startswith("img/"):
        failures.append(f"split: topk.json entry malformed: {first}")

    for f in failures:
        print("FAIL", f)
    print(f"check_trec_eval: {'all checks passed' if not failures else f'{len(failures)} failures'} "
          f"(loo map {ours['map']:.6f}, trec_eval map {trec['map']:.6f})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
