#!/usr/bin/env python3
"""test_embed_cli.py WORKDIR: `simtune embed`, `search` and `eval` as a user runs them.

Data: ORL faces from $SIMTUNE_SHARED_DIR/datasets/orl_faces (read in place; skips with 77 when
absent), people s1..s12. Wall time about 25 s on 2 idle cores.

  1. Trained settings travel with the weights (issue 13 item 3): tv_resnet18 trained one epoch
     at 64 px with GeM pooling (p = 4), a 32-d embedding head and caffe preprocessing (not the
     architecture's torch), validated on a fixed split file (images 8-10 of each person). Every weight file the run writes (best_weights.h5,
     best.h5, ckpt-*.h5) records the recipe (embed_* attributes, preprocess). `simtune embed
     --weights best_weights.h5` WITHOUT size or pooling flags says it uses 64 px and GeM p=4
     from the weights, its vectors equal those of an embed with the explicit flags, and
     `simtune eval --protocol loo` on them gives the run's own validation hit@1 and mAP@10.
     Tolerance: the embedder batches 16 images, validation 12, so oneDNN may sum in another
     order (vectors differ by ~1e-6); that can swap two results whose cosines are within
     ~1e-6, so the metrics must agree to within one query of the 36 (1/36), and the vectors of
     the two embed runs (same batch) to 1e-6.
  2. Any folder or manifest is indexed (item 10): a flat folder (unlabelled), a class tree with
     an image at its root (kept with label -1, warned) and a .webp and a text file (listed in
     a warning with their count), a TSV with a header naming only `path`, a CSV with label and
     quoted metadata columns (stored in the file, shown by search and eval's sheet), and a
     header-less `path<TAB>label` manifest as training configs use. `eval` refuses an
     unlabelled file naming it.
  3. Search output (item 11): --json has the documented shape (query, results with rank, id,
     score, label, relevant, path and metadata, timings); --html references images relative
     to the page, so a copy of the page and the images moved elsewhere together still
     resolves every image, links every result, colours relevant / irrelevant, escapes every
     string (a metadata value with <script>); --embed-thumbnails writes data: URIs that are
     JPEGs; an index built with other weights gives a warning naming both weights_ids, the
     same weights none; `embed` reports progress on stderr.
  4. Escaping (issue 14 item 4): a class name with < & " > from a CSV manifest shows escaped on
     search's page and exactly in its --json.
Exit 0 on success, 1 on the first failure list, 77 when the data, h5py or SIMTUNE_BIN are absent.
"""
import base64
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import testlib
from testlib import BIN, check

try:
    import h5py
    import numpy as np
except ImportError as e:
    testlib.missing_oracle("test_embed_cli.py", e)

ORL = os.path.join(testlib.SHARED, "datasets", "orl_faces")


def run(args):
    return subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def orl(person, image):
    return os.path.join(ORL, f"s{person}", f"{image}.png")


CONFIG = """model: {{arch: tv_resnet18, image_size: 64, pool: gem, gem_p: 4, embed_dim: 32}}
data:
  train: [{{path: {train}, name: orl}}]
  split_file: {split}
  batch_size: 12
  augment: {{random_resized_crop: false, flip: false}}
  preprocess: caffe
  workers: 2
loss: {{type: cross_entropy}}
optimizer: {{type: sgd, lr: 0.01}}
freeze_until: conv3_block2_out
epochs: 1
validation: {{metrics: [hit@1, map@10]}}
early_stopping: {{metric: val/map@10}}
seed: 3
device: cpu
threads: 2
output: {{dir: runs, name: recipe, keep_last: 0}}
"""


def embed(args):
    r = run(["embed", "--threads", "2"] + args)
    check(r.returncode == 0, f"embed {args}: exit {r.returncode}: {r.stderr}")
    return r


def eval_metrics(emb, out):
    r = run(["eval", "--embeddings", emb, "--protocol", "loo", "-k", "10", "--out", out, "--threads", "2"])
    if not check(r.returncode == 0, f"eval {emb}: exit {r.returncode}: {r.stderr}"):
        return {}
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)["metrics"]


def test_recipe():
    """Item 3: the run's weights carry their settings; embed uses them and matches validation."""
    with open("orl_train.tsv", "w") as f:
        f.write("path\tlabel\n")
        for p in range(1, 13):
            for i in range(1, 11):
                f.write(f"{orl(p, i)}\ts{p}\n")
    with open("orl_val.tsv", "w") as f:  # the split file: header-less path<TAB>label
        for p in range(1, 13):
            for i in (8, 9, 10):
                f.write(f"{orl(p, i)}\ts{p}\n")
    write("recipe.yaml", CONFIG.format(train=os.path.abspath("orl_train.tsv"), split=os.path.abspath("orl_val.tsv")))
    shutil.rmtree("runs", ignore_errors=True)
    r = run(["train", "--config", "recipe.yaml"])
    if not check(r.returncode == 0, f"train: exit {r.returncode}: {r.stderr[-2000:]}"):
        return
    with open("runs/recipe/metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    files = ["runs/recipe/best_weights.h5"] + sorted(
        os.path.join("runs/recipe", n) for n in os.listdir("runs/recipe") if n.endswith(".h5") and n != "best_weights.h5")
    check(len(files) >= 3, f"expected best_weights.h5, best.h5 and a checkpoint: {files}")
    want = {"embed_image_size": 64, "embed_resize_short": 73, "embed_crop": "center", "embed_pool": "gem",
            "embed_gem_p": 4.0, "embed_dim": 32, "embed_normalize": 1, "preprocess": "caffe", "arch": "tv_resnet18"}
    for path in files:
        with h5py.File(path, "r") as h:
            got = {k: h.attrs.get(k) for k in want}
        got = {k: v.decode() if isinstance(v, bytes) else v for k, v in got.items()}
        check(all(got[k] == v for k, v in want.items()), f"{path}: recipe {got}, want {want}")

    weights = "runs/recipe/best_weights.h5"
    r = embed(["--weights", weights, "--images", "orl_val.tsv", "--out", "val_auto.h5"])
    check("64 px (weights)" in r.stdout and "pooling gem (weights) p=4 (weights)" in r.stdout
          and "output embedding D=32" in r.stdout and "preprocess caffe" in r.stdout,
          f"embed does not say what it used from the weights: {r.stdout!r}")
    embed(["--weights", weights, "--images", "orl_val.tsv", "--out", "val_flags.h5", "--image-size", "64",
           "--pool", "gem", "--gem-p", "4"])
    embed(["--weights", weights, "--images", "orl_val.tsv", "--out", "val_224.h5", "--image-size", "224"])
    with h5py.File("val_auto.h5", "r") as a, h5py.File("val_flags.h5", "r") as b, h5py.File("val_224.h5", "r") as c:
        auto, flags, big = a["embeddings"][()], b["embeddings"][()], c["embeddings"][()]
        check(a.attrs["image_size"] == 64 and a.attrs["pooling"] in (b"gem", "gem") and a.attrs["gem_p"] == 4,
              f"val_auto.h5 attributes {dict(a.attrs)}")
    check(auto.shape == (36, 32) and np.abs(auto - flags).max() < 1e-6,
          "embedding without flags differs from embedding with the run's settings as flags")
    check(np.abs(auto - big).max() > 1e-2, "224 px gives the same vectors: the image size is not applied")
    got = eval_metrics("val_auto.h5", "eval_auto")
    for name in ("hit@1", "map@10"):
        run_value, value = last.get(f"val/{name}"), got.get(name)
        check(run_value is not None and value is not None and abs(run_value - value) <= 1 / 36 + 1e-9,
              f"{name}: embed + eval {value} vs the run's validation {run_value}")
    print(f"validation hit@1 {last.get('val/hit@1')} map@10 {last.get('val/map@10')}; embed without flags: "
          f"hit@1 {got.get('hit@1')} map@10 {got.get('map@10')}; at 224 px: {eval_metrics('val_224.h5', 'eval_224')}")
    return weights


def make_sources():
    """Folders and manifests of ORL images (copies of 12 small PNGs; the rest referenced in place)."""
    for d in ("flat", "tree", "pages_src"):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs("flat")
    for p in (1, 2):
        os.makedirs(f"tree/s{p}")
        for i in (1, 2, 3):
            shutil.copy(orl(p, i), f"flat/s{p}_{i}.png")
            shutil.copy(orl(p, i), f"tree/s{p}/{i}.png")
    shutil.copy(orl(3, 1), "tree/root.png")
    write("tree/s2/photo.webp", "RIFF\0\0\0\0WEBPVP8 ")
    write("tree/s1/notes.txt", "not an image")
    with open("paths_only.tsv", "w") as f:
        f.write("path\n")
        for i in (1, 2, 3):
            f.write(f"{orl(4, i)}\n")
    with open("products.csv", "w") as f:
        f.write("path,label,manual,page,url\n")
        f.write(f'{orl(1, 1)},s1,"Pump, model A",12,http://example.com/a?b=1&c=2\n')
        f.write(f'{orl(1, 2)},s1,"<script>alert(1)</script>",13,\n')
        f.write(f"{orl(2, 1)},s2,Valve,3,\n")
        f.write(f"{orl(2, 2)},,Valve spare,4,\n")


def test_sources(weights):
    """Item 10."""
    make_sources()
    r = embed(["--weights", weights, "--images", "flat", "--out", "flat.h5"])
    with h5py.File("flat.h5", "r") as h:
        check(h["embeddings"].shape[0] == 6 and (h["labels"][()] == -1).all() and "label_names" not in h,
              "a flat folder must give 6 unlabelled rows")
    r = embed(["--weights", weights, "--images", "tree", "--out", "tree.h5"])
    check(re.search(r"tree: 2 files skipped", r.stderr) and "photo.webp: unsupported image format" in r.stderr
          and "notes.txt" in r.stderr, f"skipped files not listed with their count: {r.stderr!r}")
    check("1 image without a class" in r.stderr, f"no warning about the root image: {r.stderr!r}")
    with h5py.File("tree.h5", "r") as h:
        labels = list(h["labels"][()])
        check(len(labels) == 7 and labels.count(-1) == 1, f"tree labels {labels}: want 6 labelled + the root image")
    r = embed(["--weights", weights, "--images", "paths_only.tsv", "--out", "paths_only.h5"])
    with h5py.File("paths_only.h5", "r") as h:
        check(h["embeddings"].shape[0] == 3 and (h["labels"][()] == -1).all(), "a TSV naming only `path`")
    r = embed(["--weights", weights, "--images", "products.csv", "--out", "products.h5"])
    with h5py.File("products.h5", "r") as h:
        cols = [c.decode() for c in h["metadata_columns"][()]]
        meta = h["metadata"][()]
        paths = [p.decode() for p in h["paths"][()]]
        row = {c: v.decode() for c, v in zip(cols, meta[paths.index(orl(1, 1))])}
        check(cols == ["manual", "page", "url"] and meta.shape == (4, 3), f"metadata columns {cols} {meta.shape}")
        check(row == {"manual": "Pump, model A", "page": "12", "url": "http://example.com/a?b=1&c=2"},
              f"metadata of {orl(1, 1)}: {row}")
    r = embed(["--weights", weights, "--images", "orl_val.tsv", "--out", "legacy.h5"])  # header-less TSV
    with h5py.File("legacy.h5", "r") as h:
        check(h["embeddings"].shape[0] == 36 and len(h["label_names"]) == 12, "header-less path<TAB>label manifest")
    r = run(["eval", "--embeddings", "flat.h5", "--out", "eval_flat"])
    check(r.returncode == 1 and "flat.h5" in r.stderr and "no labelled row" in r.stderr,
          f"eval of an unlabelled file: exit {r.returncode}, {r.stderr!r}")
    r = run(["eval", "--embeddings", "products.h5", "--protocol", "loo", "--out", "eval_products"])
    check(r.returncode == 0, f"eval products.h5: {r.stderr}")
    if r.returncode == 0:
        with open("eval_products/index.html") as f:
            sheet = f.read()
        check("Pump, model A" in sheet and "&lt;script&gt;" in sheet and "<script>" not in sheet,
              "eval's sheet must show the metadata, escaped")


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.classes = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "figure":
            self.classes.append(a.get("class"))


def parse_page(path):
    p = Page()
    with open(path) as f:
        p.feed(f.read())
    return p


def test_search(weights):
    """Item 11."""
    query = orl(1, 2)
    r = run(["search", "--index", "products.h5", "--weights", weights, "--image", query, "-k", "4", "--json",
             "--threads", "2"])
    if not check(r.returncode == 0, f"search --json: {r.stderr}"):
        return
    out = json.loads(r.stdout)
    check(out["query"] == query and out["query_label"] == "s1" and out["warnings"] == [], f"search --json header {out}")
    check(set(out["timings"]) == {"embed_s", "search_s", "total_s"}, f"timings {out['timings']}")
    res = out["results"]
    check([x["rank"] for x in res] == [1, 2, 3, 4] and res[0]["path"] == query and res[0]["relevant"] is True,
          f"results {res}")
    for x in res:
        check({"rank", "id", "score", "label", "relevant", "path", "manual", "page", "url"} <= set(x), f"keys {x}")
        want_rel = None if x["label"] is None else x["label"] == "s1"
        check(x["relevant"] == want_rel, f"relevant flag of {x}")
    check("64 px (index)" in r.stderr, f"search does not say what it used: {r.stderr!r}")
    r = run(["search", "--index", "products.h5", "--weights", weights, "--image", query, "-k", "1", "--json",
             "--query-label", "s2", "--threads", "2"])
    res = json.loads(r.stdout)["results"] if r.returncode == 0 else [{}]
    check(res[0].get("label") == "s1" and res[0].get("relevant") is False, f"--query-label s2: {res}")
    r = run(["search", "--index", "products.h5", "--weights", weights, "--image", query, "--embed-thumbnails"])
    check(r.returncode == 2 and "--html" in r.stderr, f"--embed-thumbnails without --html: exit {r.returncode}")

    # the page and the images move elsewhere together: every image still resolves
    shutil.rmtree("site", ignore_errors=True)
    os.makedirs("site/pages")
    shutil.copytree("tree", "site/tree")
    r = embed(["--weights", weights, "--images", "site/tree", "--out", "site/tree.h5"])
    r = run(["search", "--index", "site/tree.h5", "--weights", weights, "--image", "site/tree/s1/1.png", "-k", "3",
             "--html", "site/pages/q.html", "--threads", "2"])
    check(r.returncode == 0, f"search --html: {r.stderr}")
    shutil.rmtree("moved", ignore_errors=True)
    shutil.copytree("site", "moved")
    shutil.rmtree("site")
    page = parse_page("moved/pages/q.html")
    check(len(page.images) == 4 and len(page.links) == 4, f"query + 3 results, each linked: {page.images}")
    for src in page.images + page.links:
        check(not src.startswith(("/", "file:")), f"absolute image reference {src}")
        check(os.path.exists(os.path.join("moved/pages", urllib.parse.unquote(src))), f"{src} does not resolve")
    check(page.classes[0] == "query" and page.classes[1] == "relevant"
          and set(page.classes[1:]) <= {"relevant", "irrelevant", "unknown"}, f"figure classes {page.classes}")

    r = run(["search", "--index", "products.h5", "--weights", weights, "--image", query, "-k", "4",
             "--html", "thumbs.html", "--embed-thumbnails", "--threads", "2"])
    check(r.returncode == 0, f"--embed-thumbnails: {r.stderr}")
    page = parse_page("thumbs.html")
    check(len(page.images) == 5 and all(s.startswith("data:image/jpeg;base64,") for s in page.images),
          f"thumbnails are not data: URIs: {[s[:40] for s in page.images]}")
    check(all(base64.b64decode(s.split(",", 1)[1])[:3] == b"\xff\xd8\xff" for s in page.images), "not JPEG data")
    with open("thumbs.html") as f:
        text = f.read()
    check("&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text, "metadata not escaped")
    check("Pump, model A" in text and "page: 12" in text, "metadata not shown")
    check('<a href="http://example.com/a?b=1&amp;c=2">' in text, "a URL in the metadata is not a link")

    # weights other than the index's: a warning naming both identities
    shutil.copy(weights, "other_weights.h5")
    with h5py.File("other_weights.h5", "r+") as h:
        k = h["conv1_conv/conv1_conv/kernel:0"]
        k[...] = k[()] * 1.01
    with h5py.File("products.h5", "r") as h:
        index_id = h.attrs["weights_id"]
    r = run(["search", "--index", "products.h5", "--weights", "other_weights.h5", "--image", query, "--json",
             "--threads", "2"])
    out = json.loads(r.stdout) if r.returncode == 0 else {"warnings": []}
    index_id = index_id.decode() if isinstance(index_id, bytes) else index_id
    check(r.returncode == 0 and "other weights" in r.stderr and index_id in r.stderr and len(out["warnings"]) == 1,
          f"no model-mismatch warning: {r.stderr!r}")


def test_label_escaping(weights):
    """Issue 14 item 4: a class name with HTML specials, from a CSV manifest, is escaped on search's
    page (query caption and result caption) and given back exactly by --json."""
    label = 'pump <&"> model'
    with open("special.csv", "w") as f:
        f.write("path,label\n")
        for i in (1, 2):
            f.write(f'{orl(3, i)},"{label.replace(chr(34), chr(34) * 2)}"\n')
    embed(["--weights", weights, "--images", "special.csv", "--out", "special.h5"])
    r = run(["search", "--index", "special.h5", "--weights", weights, "--image", orl(3, 1), "-k", "2", "--json",
             "--html", "special.html", "--threads", "2"])
    if not check(r.returncode == 0, f"search of special.h5: {r.stderr}"):
        return
    out = json.loads(r.stdout)
    check(out["query_label"] == label and [x["label"] for x in out["results"]] == [label, label],
          f"--json labels {out['query_label']!r} {[x['label'] for x in out['results']]}")
    with open("special.html") as f:
        text = f.read()
    check(text.count("pump &lt;&amp;&quot;&gt; model") == 3 and label not in text,
          "the label is not escaped on the page (query and both results)")


def test_progress(weights):
    r = embed(["--weights", weights, "--images", "orl_train.tsv", "--out", "progress.h5", "--batch", "8"])
    lines = [l for l in r.stderr.splitlines() if l.startswith("  embed ")]
    check(len(lines) >= 5 and lines[-1].startswith("  embed 120/120 images"), f"progress lines {lines}")


def main():
    if not BIN or not os.path.isdir(ORL):
        print("test_embed_cli.py: SIMTUNE_BIN or the ORL dataset is missing", file=sys.stderr)
        return 77
    os.makedirs(sys.argv[1], exist_ok=True)
    os.chdir(sys.argv[1])
    weights = test_recipe()
    if weights:
        test_sources(weights)
        test_search(weights)
        test_label_escaping(weights)
        test_progress(weights)
    return testlib.finish("test_embed_cli")


if __name__ == "__main__":
    sys.exit(main())
