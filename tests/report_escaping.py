#!/usr/bin/env python3
"""report_escaping.py WORKDIR: `simtune eval`'s reports carry any string a user's files hold.

An embedding file (written with h5py, as `simtune embed` would) whose class names, image paths
and metadata contain the HTML and JSON specials < & " > ' and \\, plus one path that is not
UTF-8 (a Latin-1 file name), is evaluated through the binary (loo protocol). Then:
  - index.html shows every such string escaped (&lt; &amp; &quot; &gt;) and never raw;
  - report.json and topk.json are valid JSON (Python's strict parser) and give back the
    strings exactly, the Latin-1 byte as U+FFFD (JSON text must be UTF-8);
  - a query of the special class comes first with its path, so nothing was dropped.
Exit 0 on success (the work folder removed), 1 on a failure (kept), 77 when h5py/numpy are absent.
"""
import json
import os
import subprocess
import sys

import testlib
from testlib import BIN, check

try:
    import h5py
    import numpy as np
except ImportError as e:
    testlib.missing_oracle("report_escaping.py", e)

SPECIAL = 'pump <&"> \'x\' \\ model'


def write_embeddings(path):
    """Two classes of 4 rows; class 0 is SPECIAL. Row 5's path is Latin-1 bytes."""
    rng = np.random.default_rng(1)
    x = np.repeat(np.eye(2, 4, dtype=np.float32), 4, axis=0) + 0.01 * rng.standard_normal((8, 4)).astype(np.float32)
    paths = [f"img/{SPECIAL}/{i}.png".encode() for i in range(4)] + [f"img/plain/{i}.png".encode() for i in range(4)]
    paths[5] = b"img/plain/caf\xe9.png"
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=x)
        f.create_dataset("labels", data=np.array([0] * 4 + [1] * 4, dtype=np.int32))
        f.create_dataset("label_names", data=[SPECIAL.encode(), b"plain"], dtype=h5py.string_dtype())
        f.create_dataset("paths", data=paths, dtype=h5py.string_dtype())
        f.create_dataset("metadata_columns", data=[b"note"], dtype=h5py.string_dtype())
        f.create_dataset("metadata", data=[[f"<b>{i}</b> & co".encode()] for i in range(8)],
                         dtype=h5py.string_dtype())


def main():
    work = os.path.abspath(testlib.inputs(["WORKDIR"])[0])
    os.makedirs(work, exist_ok=True)
    os.chdir(work)
    write_embeddings("special.h5")
    r = subprocess.run([BIN, "eval", "--embeddings", "special.h5", "--protocol", "loo", "-k", "3", "--out", "out"],
                       capture_output=True, text=True)
    if not check(r.returncode == 0, f"eval: exit {r.returncode}: {r.stderr}"):
        return 1
    with open("out/index.html", encoding="utf-8", errors="replace") as f:
        sheet = f.read()
    escaped = "pump &lt;&amp;&quot;&gt; &#39;x&#39; \\ model"
    check(escaped in sheet, "the class name is not shown escaped in index.html")
    check(SPECIAL not in sheet and "<&" not in sheet and "<b>" not in sheet, "a raw special string in index.html")
    check("&lt;b&gt;0&lt;/b&gt; &amp; co" in sheet, "the metadata is not shown escaped in index.html")
    try:
        with open("out/report.json", encoding="utf-8") as f:
            report = json.load(f)
        with open("out/topk.json", encoding="utf-8") as f:
            topk = json.load(f)
    except ValueError as e:
        check(False, f"report.json / topk.json are not valid UTF-8 JSON: {e}")
        return 1
    check(report["embeddings"] == "special.h5" and report["queries"] == 8, f"report.json header {report}")
    first = topk["queries"][0]
    check(first["query"] == f"img/{SPECIAL}/0.png", f"topk.json query path {first['query']!r}")
    check(first["results"][0]["path"].startswith(f"img/{SPECIAL}/") and first["results"][0]["hit"] is True,
          f"topk.json first result {first['results'][0]}")
    paths = {q["query"] for q in topk["queries"]}
    check("img/plain/caf\ufffd.png" in paths, f"the Latin-1 path is not U+FFFD-repaired: {sorted(paths)}")
    return testlib.finish("report_escaping", [work])


if __name__ == "__main__":
    sys.exit(main())
