#!/usr/bin/env python3
"""test_trainer_validation.py: which images a run trains and validates on, through `simtune train`
on the shared ORL faces and COIL-100 objects (read in place; manifests of absolute paths are
written into the test directory).

  1. Open-set vs closed-set on ORL, the same model: with freeze_until: all and no embedding head
     the retrieval features are the frozen backbone's (only the classifier head trains), and the
     seed is the same, so both runs rank with one model. val_fraction 0.2 validates on 80 images
     of all 40 people; val_classes 0.25 on the 100 images of 10 people never trained on. The two
     val/map@10 differ, the summary says "closed-set" / "open-set" with the held-out classes, and
     the split file written on first use lists exactly those 10 people's images.
  2. val_classes is deterministic by split_seed (same seed, same classes; another seed, others),
     takes class names, refuses an unknown name (exit 1, naming the key and the class); an
     existing split_file wins over the computed split (it is read, not rewritten).
  3. strategy cross: ORL s1..s30 and s31..s40 as two datasets trains on 300 images and validates
     on the 100 of the last (open-set); COIL objects then ORL faces: trains on the objects only.
  4. strategy sequential: COIL then ORL, one phase per dataset in list order, each phase on its
     own dataset's classes only (metrics.jsonl phases and the per-phase summary).
Three one-epoch runs at 32 px, the other cases through `train --check` (same summary, no training):
about 20 s of CPU. Exit 77 without the datasets.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import testlib
from testlib import BIN, check

DATASETS = os.path.join(testlib.SHARED, "datasets")
ORL = os.path.abspath(os.path.join(DATASETS, "orl_faces"))
COIL = os.path.abspath(os.path.join(DATASETS, "coil100"))
WORK = os.path.abspath("validation_runs")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def manifest(name, rows):
    path = os.path.join(WORK, name)
    write(path, "".join("%s\t%s\n" % row for row in rows))
    return path


def orl_rows(first, last):
    return [("%s/s%d/%d.png" % (ORL, i, j), "s%d" % i) for i in range(first, last + 1) for j in range(1, 11)]


def coil_rows(objects, views):
    return [("%s/obj%03d/obj%d__%d.png" % (COIL, o, o, 5 * v), "obj%03d" % o)
            for o in objects for v in range(views)]


BASE = """model: {arch: tv_resnet18, image_size: 32}
data:
  train: %(train)s
  batch_size: 16
  augment: {random_resized_crop: false, flip: false}
  workers: 2
%(data)sloss: {type: cross_entropy}
optimizer: {type: sgd, lr: 0.01}
freeze_until: all
epochs: 1
seed: 3
device: cpu
threads: 2
validation: {metrics: [hit@1, map@10]}
output: {dir: %(out)s}
"""


def train(name, train_list, data_keys, expect_ok=True, check_only=False):
    """`simtune train` on a config made of BASE; check_only: with --check (prints the same data,
    validation and phase summary, trains nothing)."""
    config = os.path.join(WORK, name + ".yaml")
    write(config, BASE % {"train": train_list, "data": data_keys, "out": os.path.join(WORK, "runs")})
    r = subprocess.run([BIN, "train", "--config", config, "--name", name] + (["--check"] if check_only else []),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if expect_ok and not check(r.returncode == 0, "%s: exit %d: %s" % (name, r.returncode, r.stderr[-800:])):
        return r, []
    rows = []
    log = os.path.join(WORK, "runs", name, "metrics.jsonl")
    if os.path.exists(log):
        with open(log) as f:
            rows = [json.loads(line) for line in f]
    return r, rows


def validation_line(stdout):
    m = re.search(r"^validation: (open|closed)-set, (\d+) images of (\d+) classes[^\n]*", stdout, re.M)
    return m


def backbone_weights(path):
    """Every float weight of a weight file but the classifier head's ('predictions'), as bytes;
    None without h5py/numpy (then not compared)."""
    out = testlib.float32_datasets(path, keep=lambda name: "predictions" not in name)
    return None if out is None else {k: v.tobytes() for k, v in out.items()}


def held_out_names(stdout):
    m = re.search(r"^validation: open-set, \d+ images of \d+ classes never trained on: ([^\n]*)", stdout, re.M)
    return m.group(1).split() if m else []


def test_open_vs_closed():
    orl = "[{path: %s, name: orl}]" % ORL
    r, closed = train("closed", orl, "  val_fraction: 0.2\n")
    m = validation_line(r.stdout)
    check(m and m.group(1) == "closed" and m.group(2) == "80" and m.group(3) == "40",
          "closed-set summary: 80 images of 40 classes, got %r" % (m and m.group(0)))
    split = os.path.join(WORK, "open_split.tsv")
    r, opened = train("open", orl, "  val_classes: 0.25\n  split_seed: 5\n  split_file: %s\n" % split)
    m = validation_line(r.stdout)
    check(m and m.group(1) == "open" and m.group(2) == "100" and m.group(3) == "10",
          "open-set summary: 100 images of 10 classes, got %r" % (m and m.group(0)))
    check("phase 'main': 1 epochs on 300 images of 30 classes" in r.stdout, "open-set trains on the other 30 people")
    held = held_out_names(r.stdout)
    check(len(held) == 10, "the summary names the 10 held-out people: %r" % held)
    check(os.path.exists(split), "split_file written on first use")
    if os.path.exists(split):
        with open(split) as f:
            lines = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        check(len(lines) == 100 and sorted({c for _, c in lines}) == sorted(held),
              "the split file lists the held-out people's 100 images (path<TAB>class)")
    a = backbone_weights(os.path.join(WORK, "runs", "closed", "best_weights.h5"))
    b = backbone_weights(os.path.join(WORK, "runs", "open", "best_weights.h5"))
    if a is not None:
        check(len(a) > 50 and a == b, "the two runs rank with the same model (backbone weights identical)")
    if check(closed and opened, "both runs logged a metrics line"):
        a, b = closed[-1].get("val/map@10"), opened[-1].get("val/map@10")
        check(isinstance(a, float) and isinstance(b, float) and a != b,
              "closed-set and open-set val/map@10 differ for the same model: %r vs %r" % (a, b))
        # closed-set, a query's one relevant image competes with 78 others; open-set, nine do with
        # 90: hit@1 must differ by far more than a tie-break could (measured 0.475 vs 0.940)
        h1, h2 = closed[-1].get("val/hit@1"), opened[-1].get("val/hit@1")
        check(isinstance(h1, float) and isinstance(h2, float) and abs(h1 - h2) > 0.1,
              "closed-set and open-set val/hit@1 differ for the same model: %r vs %r" % (h1, h2))
        print("same model: closed-set val/map@10 %.4f hit@1 %.4f, open-set val/map@10 %.4f hit@1 %.4f"
              % (a, closed[-1]["val/hit@1"], b, opened[-1]["val/hit@1"]))
    return held, split


def test_holdout_rules(held, split):
    orl = "[{path: %s, name: orl}]" % ORL
    r, _ = train("same_seed", orl, "  val_classes: 0.25\n  split_seed: 5\n", check_only=True)
    check(held_out_names(r.stdout) == held, "the same split_seed holds out the same classes")
    r, _ = train("other_seed", orl, "  val_classes: 0.25\n  split_seed: 6\n", check_only=True)
    other = held_out_names(r.stdout)
    check(len(other) == 10 and other != held, "another split_seed holds out other classes: %r" % other)
    r, _ = train("by_name", orl, "  val_classes: [s7, s40]\n", check_only=True)
    check(held_out_names(r.stdout) == ["s40", "s7"] and "20 images of 2 classes" in r.stdout,
          "val_classes by name holds out s7 and s40: %r" % validation_line(r.stdout))
    r, _ = train("bad_name", orl, "  val_classes: [s7, s99]\n", expect_ok=False, check_only=True)
    check(r.returncode == 1 and "data.val_classes" in r.stderr and "'s99'" in r.stderr,
          "--check: an unknown class name: exit 1 naming the key and the class: %r" % r.stderr[-300:])
    r, _ = train("bad_name", orl, "  val_classes: [s7, s99]\n", expect_ok=False)
    check(r.returncode == 1 and "data.val_classes" in r.stderr and "'s99'" in r.stderr,
          "an unknown class name: exit 1 naming the key and the class: %r" % r.stderr[-300:])
    before = open(split).read()
    r, _ = train("reuse_split", orl, "  val_classes: 0.5\n  split_file: %s\n" % split, check_only=True)
    check(held_out_names(r.stdout) == held and open(split).read() == before,
          "an existing split file is read (its 10 classes, not 0.5 of them) and left as it was")


def test_cross():
    a = manifest("orl_a.tsv", orl_rows(1, 30))
    b = manifest("orl_b.tsv", orl_rows(31, 40))
    r, _ = train("cross_orl", "[%s, %s]" % (a, b), "  strategy: cross\n", check_only=True)
    check("data: 300 train / 100 val images, 40 classes" in r.stdout, "cross: 300 train / 100 val: %r" % r.stdout[:300])
    check(held_out_names(r.stdout) == ["orl_b/s%d" % i for i in range(31, 41)],
          "cross validates on the last dataset's people: %r" % held_out_names(r.stdout))
    coil = manifest("coil.tsv", coil_rows(range(2, 14), 8))
    r, _ = train("cross_coil_orl", "[%s, %s]" % (coil, b), "  strategy: cross\n", check_only=True)
    check("data: 96 train / 100 val images, 22 classes" in r.stdout and "phase 'main': 1 epochs on 96 images of 12 classes"
          in r.stdout, "cross COIL -> ORL: trains on the 96 object views only: %r" % r.stdout[:400])
    check(validation_line(r.stdout) and validation_line(r.stdout).group(1) == "open", "cross is open-set")


def test_sequential():
    coil = os.path.join(WORK, "coil.tsv")
    b = os.path.join(WORK, "orl_b.tsv")
    r, rows = train("sequential", "[%s, %s]" % (coil, b), "  strategy: sequential\n  val_fraction: 0.25\n")
    # 0.25 of 8 views -> 2 per object held out, of 10 faces -> 3 (round half up) per person
    check("phase 'coil': 1 epochs on 72 images of 12 classes" in r.stdout, "phase coil: the 72 object views left")
    check("phase 'orl_b': 1 epochs on 70 images of 10 classes" in r.stdout, "phase orl_b: the 70 faces left")
    check([row.get("phase") for row in rows] == ["coil", "orl_b"], "one epoch per phase, in list order: %r"
          % [row.get("phase") for row in rows])


def main():
    testlib.inputs(status=77)
    if not (os.path.isdir(ORL) and os.path.isdir(COIL)):
        print("skipped: the shared ORL / COIL-100 datasets are absent (%s)" % DATASETS)
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    held, split = test_open_vs_closed()
    test_holdout_rules(held, split)
    test_cross()
    test_sequential()
    return testlib.finish("test_trainer_validation")


if __name__ == "__main__":
    sys.exit(main())
