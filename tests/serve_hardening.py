#!/usr/bin/env python3
"""serve_hardening.py FIXTURE WORKDIR: `simtune serve` refuses what it must, and says why.

Server 1 (--max-upload-mb 1 --max-pixels 1000000), each answer checked for status, a JSON body
with an "error" reason and the server still answering afterwards:
  - a 2 MiB body: 413, both with Content-Length (refused before reading) and chunked (while
    reading);
  - a PNG whose header claims 20000 x 20000 pixels (a decompression bomb; its data is 1 KiB):
    400 naming the pixel limit, refused from the header, before decoding;
  - not an image, an empty body, a truncated PNG: 400 with the reason;
  - k = 0, abc, 1001, " 5" and metric = cosine2: 400 naming the parameter;
  - GET /images/ with ../ traversal (raw and %-encoded), -1, 1e3, 0x1, 99999: 404, never a file;
    an unknown page 404, GET /search 405;
  - Content-Type of every kind of answer (JSON, HTML, Prometheus text, image).
Server 2 (--queue 1 --batch-wait-ms 1500): the first query waits in the queue for a batch, a
second one finds the queue full: 503 "busy"; SIGTERM while the first is still in flight: that
request still gets its 200 and the server exits 0.
Command line: --help lists every option (exit 0); a bad number, no --index, --allow-write
without --token-file exit 2 naming the problem; a missing index, an empty token file and a port
already in use exit 1 naming the file / port.
Exit 0 on success, 1 on a failure.
"""
import http.client
import json
import os
import shutil
import signal
import sys
import threading
import time
import zlib

import serve_common as sc
import testlib
from testlib import check


def expect_error(server, what, status, want, body=None, headers=None, path="/search", method="POST", reason=""):
    got, hdrs, data = sc.request(server.url(path), method, body, headers or {})
    try:
        out = json.loads(data)
    except ValueError:
        out = {}
    check(got == want and hdrs.get("Content-Type") == "application/json" and reason in out.get("error", ""),
          f"{what}: {got} {data[:300]!r}, want {want} with {reason!r}")


def chunked_upload(server, size):
    """A body without Content-Length (chunked): the limit must hold while reading."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/search", body=iter([b"\0" * 65536] * (size // 65536)),
                     headers={"Content-Type": "image/png"}, encode_chunked=True)
        return conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        return 413  # the server may close while we still send: acceptable, it refused
    finally:
        conn.close()


def declared_too_large(server, size):
    """Only the headers of a POST declaring `size` bytes: the answer must come before the body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/search")
        conn.putheader("Content-Type", "image/jpeg")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status if "larger than" in json.loads(resp.read())["error"] else -1
    finally:
        conn.close()


def test_limits(server, fx):
    check(declared_too_large(server, 2 << 20) == 413, "a declared 2 MiB upload: 413 before the body is sent")
    check(chunked_upload(server, 2 << 20) == 413, "chunked 2 MiB upload: 413")
    bomb = sc.png_with_header(20000, 20000, zlib.compress(b"\0" * 1024))
    body, ctype = sc.multipart({}, {"image": ("bomb.png", bomb)})
    expect_error(server, "pixel bomb", None, 400, body, {"Content-Type": ctype}, reason="above the limit of 1000000")
    with open(fx["images"][1], "rb") as f:
        png = f.read()
    for what, data in (("text", b"hello, not an image"), ("empty", b""), ("truncated", png[: len(png) // 2])):
        body, ctype = sc.multipart({}, {"image": (what, data)})
        expect_error(server, f"{what} upload", None, 400, body, {"Content-Type": ctype})
    for k in ("0", "abc", "1001", " 5"):
        body, ctype = sc.multipart({"k": k}, {"image": ("q.png", png)})
        expect_error(server, f"k={k!r}", None, 400, body, {"Content-Type": ctype}, reason="k '")
    body, ctype = sc.multipart({"metric": "cosine2"}, {"image": ("q.png", png)})
    expect_error(server, "metric cosine2", None, 400, body, {"Content-Type": ctype}, reason="metric")
    status, _ = sc.search(server, png, k=2)
    check(status == 200, f"the server still answers after the refusals: {status}")


def test_paths_and_types(server, fx):
    for path in ("/images/../../../etc/passwd", "/images/..%2f..%2fetc%2fpasswd", "/images/-1", "/images/1e3",
                 "/images/0x1", "/images/99999", "/images/", "/images/1/../2"):
        status, _, data = sc.request(server.url(path))
        check(status == 404 and b"root:" not in data and b"\x89PNG" not in data, f"GET {path}: {status}")
    expect_error(server, "unknown page", None, 404, path="/etc/passwd", method="GET")
    expect_error(server, "GET /search", None, 405, path="/search", method="GET")
    for path, kind in (("/", "text/html; charset=utf-8"), ("/healthz", "application/json"),
                       ("/metrics", "text/plain; version=0.0.4; charset=utf-8")):
        status, headers, _ = sc.request(server.url(path))
        check(status == 200 and headers.get("Content-Type") == kind and headers.get("X-Content-Type-Options") ==
              "nosniff", f"GET {path}: {status} {headers}")
    status, headers, _ = sc.request(server.url("/images/0"))
    check(status == 200 and headers.get("Content-Type") in ("image/png", "image/jpeg"), f"/images/0 {headers}")


def test_queue_and_drain(fx):
    server = sc.Server(fx["index"], "--queue", "1", "--batch-wait-ms", "1500")
    if not check(server.port, f"no startup line: {server.text()}"):
        return
    with open(fx["images"][2], "rb") as f:
        png = f.read()
    first = {}
    t = threading.Thread(target=lambda: first.update(result=sc.search(server, png, k=2)))
    t.start()
    time.sleep(0.5)  # the first query now waits in the queue for a batch (1.5 s)
    status, out = sc.search(server, png, k=2)
    check(status == 503 and "busy" in (out or {}).get("error", ""), f"a full queue: {status} {out}")
    server.proc.send_signal(signal.SIGTERM)
    t.join(30)
    check(first.get("result", (0,))[0] == 200, f"the request in flight at SIGTERM: {first}")
    code = server.stop()
    check(code == 0, f"exit {code} after SIGTERM, want 0: {server.text()[-1500:]}")


def test_cli(fx, work):
    r = sc.run(["serve", "--help"])
    check(r.returncode == 0 and all(o in r.stdout for o in (
        "--index", "--weights", "--host", "--port", "--threads", "--batch", "--batch-wait-ms", "--queue",
        "--request-timeout", "--idle-timeout", "--max-connections", "--max-upload-mb", "--max-pixels",
        "--allow-write", "--token-file")), f"serve --help: {r.returncode} {r.stdout}")
    for args, want in ((["--index", fx["index"], "--port", "80x"], "--port '80x'"), ([], "--index is required"),
                       (["--index", fx["index"], "--allow-write"], "--allow-write and --token-file"),
                       (["--index", fx["index"], "--max-upload-mb", "0"], "--max-upload-mb '0'")):
        r = sc.run(["serve"] + args)
        check(r.returncode == 2 and want in r.stderr, f"serve {args}: exit {r.returncode} {r.stderr!r}")
    empty = os.path.join(work, "empty_token")
    open(empty, "w").close()
    for args, want in ((["--index", "no_such.h5"], "no_such.h5"),
                       (["--index", fx["index"], "--allow-write", "--token-file", empty], "empty_token")):
        r = sc.run(["serve", "--port", "0"] + args, timeout=120)
        check(r.returncode == 1 and want in r.stderr, f"serve {args}: exit {r.returncode} {r.stderr!r}")
    server = sc.Server(fx["index"])
    if server.port:
        r = sc.run(["serve", "--index", fx["index"], "--port", str(server.port)], timeout=120)
        check(r.returncode == 1 and f"port {server.port}" in r.stderr, f"a port in use: {r.returncode} {r.stderr!r}")
    server.stop()


def main():
    fixture, work = testlib.inputs(["FIXTURE", "WORKDIR"])
    fx = {"index": os.path.join(fixture, "index.h5")}
    fx["images"] = sorted(os.path.join(fixture, "devices", d, n) for d in os.listdir(os.path.join(fixture, "devices"))
                          for n in os.listdir(os.path.join(fixture, "devices", d)))
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sc.Server.LOG_DIR = work
    server = sc.Server(fx["index"], "--max-upload-mb", "1", "--max-pixels", "1000000")
    if check(server.port, f"no startup line: {server.text()}"):
        try:
            test_limits(server, fx)
            test_paths_and_types(server, fx)
        finally:
            check(server.stop() == 0, "SIGTERM: exit 0")
            check(server.proc.returncode == 0 and "Segmentation" not in server.text(), "no crash")
    test_queue_and_drain(fx)
    test_cli(fx, work)
    return testlib.finish("serve_hardening", [work])


if __name__ == "__main__":
    sys.exit(main())
