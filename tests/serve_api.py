#!/usr/bin/env python3
"""serve_api.py FIXTURE WORKDIR: `simtune serve`'s API as a client uses it (docs/serve.md).

FIXTURE is serve_setup.py's folder (tiny gallery, model, index). The index is copied to WORKDIR,
which the server may write. Checks:
  1. Startup: the server finds the weights the index records (no --weights), binds 127.0.0.1 and
     prints the URL; GET / is the upload form (text/html, a file input accepting images, no
     script).
  2. POST /search (multipart `image`, and the raw body with k in the URL) answers what
     `simtune search --json` answers for the same image, and `simtune topk` for the image
     embedded by `simtune embed`: same ids, labels, paths, metadata in the same order;
     scores within 1e-5 (the server embeds in a batch-8 model, search in a
     batch-1 one: oneDNN may sum in another order, ~1e-6 here), plus the timings
     queue_s and batch_size and a request_id.
  3. POST / (the page's form) renders the results: every result with its thumbnail linked to
     /images/<id>, the metadata escaped ("<script>" never raw), URLs as links.
  4. GET /images/<id> returns the indexed file's bytes with its image type; /healthz and
     /metrics (Prometheus text: requests by status, latency and batch histograms, queue depth).
  5. POST /index: 403 without --allow-write; with it, 401 without or with a wrong token; with
     the token a new image is added (201, id 24), found first by a search for it (a search
     before the write opened the old snapshot's gallery: the batcher must follow), the index
     file on disk has 25 rows and `simtune search` on that file ranks it first too.
  6. SIGHUP reloads the index file (back to 24 rows), and with a broken file keeps the index it
     has (a log line says why); SIGTERM exits 0; every request has a log line with its id.
Exit 0 on success, 1 on a failure.
"""
import json
import os
import re
import shutil
import signal
import sys
import time

import serve_common as sc
import testlib
from testlib import check

try:
    import h5py
except ImportError as e:
    testlib.missing_oracle("serve_api.py", e)


def topk_cli(fx, rows, work):
    """`simtune embed` of the images of rows, then `simtune topk` against the index: (ids, scores)."""
    with open(os.path.join(work, "queries.tsv"), "w") as f:
        f.write("path\n" + "".join(fx["images"][i] + "\n" for i in rows))
    queries, hits = os.path.join(work, "queries.h5"), os.path.join(work, "hits.h5")
    r = sc.run(["embed", "--weights", fx["weights"], "--images", os.path.join(work, "queries.tsv"), "--out", queries,
                "--threads", "2"])
    r2 = sc.run(["topk", "--gallery", fx["index"], "--queries", queries, "-k", "5", "--out", hits])
    if not check(r.returncode == 0 and r2.returncode == 0, f"embed / topk: {r.stderr} {r2.stderr}"):
        return None
    with h5py.File(hits, "r") as h:
        return h["indices"][()], h["scores"][()]


def test_search_equals_cli(server, fx, work):
    rows = (0, 7, 13, 22)
    topk = topk_cli(fx, rows, work)
    for j, i in enumerate(rows):
        image = fx["images"][i]
        with open(image, "rb") as f:
            data = f.read()
        status, served = sc.search(server, data, k=5, filename=os.path.basename(image))
        cli = sc.search_cli(fx["index"], fx["weights"], image, 5)
        if not check(status == 200 and served and cli, f"search {image}: {status} {served}"):
            return
        check(sc.same_results(served, cli, 1e-5), f"{image}: served {served['results']} != cli {cli['results']}")
        check(served["results"][0]["id"] == i, f"{image}: the image itself first: {served['results'][0]}")
        if topk is not None:
            ids, scores = [x["id"] for x in served["results"]], [x["score"] for x in served["results"]]
            check(ids == list(topk[0][j]) and max(abs(a - b) for a, b in zip(scores, topk[1][j])) <= 1e-5,
                  f"{image}: served {ids} {scores} != topk {topk[0][j]} {topk[1][j]}")
        check({"embed_s", "search_s", "total_s", "queue_s", "batch_size"} <= set(served["timings"]),
              f"timings {served['timings']}")
        check(set(served) >= set(cli) and re.fullmatch(r"[0-9a-f]{8}", served["request_id"]), f"keys {set(served)}")
    status, headers, body = sc.request(server.url("/search?k=3&metric=l2"), "POST", data,
                                       {"Content-Type": "image/png"})
    out = json.loads(body)
    # l2 of an image to its own row: ~0 but from the expanded form |q|^2 - (2<q,g> - |g|^2) in
    # float32 with |q| = |g| = 1 (infer/topk.h), whose rounding (~1e-6) gives sqrt(1e-6) = 1e-3
    check(status == 200 and headers["Content-Type"] == "application/json" and len(out["results"]) == 3
          and out["results"][0]["id"] == 22 and out["results"][0]["score"] < 1e-2,
          f"raw body, l2: {status} {out}")


def test_page(server, fx):
    status, headers, body = sc.request(server.url("/"))
    page = body.decode()
    check(status == 200 and headers["Content-Type"].startswith("text/html"), f"GET /: {status} {headers}")
    check('enctype="multipart/form-data"' in page and 'type="file"' in page and 'accept="image/*"' in page
          and "<script" not in page, "the upload form")
    check("script-src" not in headers.get("Content-Security-Policy", "x") and
          "default-src 'none'" in headers.get("Content-Security-Policy", ""), "a CSP without scripts")
    with open(fx["images"][1], "rb") as f:
        body, ctype = sc.multipart({"k": "24"}, {"image": ("q.png", f.read())})
    status, _, page = sc.request(server.url("/"), "POST", body, {"Content-Type": ctype})
    page = page.decode()
    check(status == 200 and page.count('<figure class="result">') == 24, f"POST / results: {status}")
    check("<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, "metadata escaped")
    check('<a href="https://example.com/m?id=0&amp;x=1">' in page, "URLs shown as links")
    check(all(f'<a href="/images/{i}"><img src="/images/{i}"' in page for i in range(24)), "thumbnails linked")


def test_images_health_metrics(server, fx):
    status, headers, body = sc.request(server.url("/images/3"))
    with open(fx["images"][3], "rb") as f:
        want = f.read()
    kind = "image/png" if want.startswith(b"\x89PNG") else "image/jpeg"
    check(status == 200 and body == want and headers["Content-Type"] == kind, f"/images/3: {status} {headers}")
    status, headers, body = sc.request(server.url("/healthz"))
    check(status == 200 and json.loads(body) == {"status": "ok", "images": 24}, f"/healthz {status} {body}")
    status, headers, body = sc.request(server.url("/metrics"))
    text = body.decode()
    check(status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), "metrics type")
    check(re.search(r'^simtune_requests_total\{code="200"\} \d+$', text, re.M) and
          'simtune_request_duration_seconds_bucket{le="+Inf"}' in text and "simtune_batch_size_count" in text
          and re.search(r"^simtune_queue_depth 0$", text, re.M), f"metrics: {text}")


def test_index_writes(fx, work):
    index = os.path.join(work, "index.h5")
    server = sc.Server(index)
    new = sc.png_bytes(48, 48, 99)
    body, ctype = sc.multipart({"label": "device_new", "manual": "Added <b>"}, {"image": ("new.png", new)})
    status, _, _ = sc.request(server.url("/index"), "POST", body, {"Content-Type": ctype})
    check(status == 403, f"POST /index without --allow-write: {status}")
    check(server.stop() == 0, "SIGTERM: exit 0")
    with open(os.path.join(work, "token"), "w") as f:
        f.write("s3cret-token\n")
    server = sc.Server(index, "--allow-write", "--token-file", os.path.join(work, "token"))
    for auth in ({}, {"Authorization": "Bearer s3cret-tokeX"}, {"Authorization": "Bearer s3cret"}):
        status, _, _ = sc.request(server.url("/index"), "POST", body, dict(auth, **{"Content-Type": ctype}))
        check(status == 401, f"POST /index with {auth}: {status}")
    # a search before the write: the batcher's gallery of the 24-row snapshot, which the write replaces
    status, served = sc.search(server, new, k=1)
    check(status == 200 and served["results"][0]["id"] != 24, f"search before POST /index: {status} {served}")
    status, _, out = sc.request(server.url("/index"), "POST", body,
                                {"Content-Type": ctype, "Authorization": "Bearer s3cret-token"})
    check(status == 201 and json.loads(out)["id"] == 24, f"POST /index: {status} {out}")
    status, served = sc.search(server, new, k=3)
    check(status == 200 and served["results"][0]["id"] == 24 and served["results"][0]["label"] == "device_new"
          and served["results"][0]["manual"] == "Added <b>", f"the added image found: {served}")
    with h5py.File(index, "r") as h:
        path = h["paths"][24].decode()
        check(h["embeddings"].shape[0] == 25, "the index file has the new row")
    with open(path, "rb") as f:
        check(f.read() == new, "the stored image is the upload")
    cli = sc.search_cli(index, fx["weights"], path, 3)
    check(cli and sc.same_results(served, cli, 1e-5), f"simtune search on the written index: {cli}")
    shutil.copyfile(fx["index"], index + ".new")
    os.replace(index + ".new", index)
    server.proc.send_signal(signal.SIGHUP)
    images = None
    for _ in range(100):
        images = json.loads(sc.request(server.url("/healthz"))[2])["images"]
        if images == 24 and "reloaded" in server.text():  # the log line may trail the swap
            break
        time.sleep(0.1)
    check(images == 24 and "reloaded" in server.text(), f"SIGHUP reload: {images} images")
    with open(index + ".new", "wb") as f:
        f.write(b"not an HDF5 file")
    os.replace(index + ".new", index)
    server.proc.send_signal(signal.SIGHUP)
    for _ in range(100):
        if "reload refused" in server.text():
            break
        time.sleep(0.1)
    status, served = sc.search(server, new, k=1)
    check("reload refused" in server.text() and status == 200 and served["results"][0]["id"] != 24,
          f"SIGHUP with a broken file keeps the old index: {status} {served}")
    check(server.stop() == 0, "SIGTERM: exit 0")
    check(re.search(r"serve: [0-9a-f]{8} POST /index 201 ", server.text()), "request log lines")


def main():
    fixture, work = testlib.inputs(["FIXTURE", "WORKDIR"])
    fx = {"index": os.path.join(fixture, "index.h5"), "weights": os.path.join(fixture, "runs/serve/best_weights.h5")}
    with h5py.File(fx["index"], "r") as h:
        fx["images"] = [p.decode() for p in h["paths"][()]]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sc.Server.LOG_DIR = work
    shutil.copyfile(fx["index"], os.path.join(work, "index.h5"))
    server = sc.Server(os.path.join(work, "index.h5"))
    if not check(server.port, f"no startup line: {server.text()}"):
        server.stop()
        return testlib.finish("serve_api", [work])
    check("listening on http://127.0.0.1:" in server.text(), "startup line with the URL")
    try:
        test_search_equals_cli(server, fx, work)
        test_page(server, fx)
        test_images_health_metrics(server, fx)
    finally:
        check(server.stop() == 0, f"SIGTERM: exit 0; log: {server.text()[-2000:]}")
    test_index_writes(fx, work)
    return testlib.finish("serve_api", [work])


if __name__ == "__main__":
    sys.exit(main())
