"""serve_common.py: what the `simtune serve` tests (tests/serve_*.py) share.

  make_fixture(work, make_synthetic)
                 the tiny gallery every serve test uses, built through the CLI as a user
                 would: 4 generated device classes x 6 images (48x48, tests/make_synthetic.c),
                 a tv_resnet18 trained one epoch at 32 px (`simtune train`), and the index
                 (`simtune embed` of a CSV manifest with metadata columns manual, page, url;
                 one manual holds "<script>" and one url a link). Returns the paths in a dict
                 {"index", "weights", "images": [paths in index order], "work"}. About 10 s.
  Server(index, *args)
                 `simtune serve --index INDEX --port 0 --threads 2 ARGS` started as a child; the
                 port is read from its startup line; its stderr is collected in .log (a thread
                 drains it so the server never blocks on a full pipe). .url(path), .stop(sig)
                 -> exit code, .rss_kib(). With Server.LOG_DIR set, stop() writes the log to
                 LOG_DIR/server-<n>.log (the test's work folder, kept when a check fails).
  request(url, method, body, headers) -> (status, headers, bytes) without raising on 4xx/5xx.
  multipart(fields, files) -> (body, content_type); files: {name: (filename, bytes)}.
  search_cli(index, weights, image, k) -> search --json's object from `simtune search`.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import urllib.parse
import uuid

from testlib import BIN, check

CONFIG = """model: {{arch: tv_resnet18, image_size: 32, embed_dim: 16}}
data:
  train: [{{path: {data}, name: synth}}]
  val_fraction: 0.25
  batch_size: 8
loss: {{type: cross_entropy}}
optimizer: {{type: sgd, lr: 0.01}}
epochs: 1
freeze_until: conv4_block2_out
seed: 3
device: cpu
threads: 2
output: {{dir: {runs}, keep_last: 1}}
"""


def run(args, **kw):
    return subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def make_fixture(work, make_synthetic):
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "devices")
    subprocess.run([make_synthetic, data, "4", "6", "48", "48", "21", "0", "0"], check=True)
    with open(os.path.join(work, "train.yaml"), "w") as f:
        f.write(CONFIG.format(data=data, runs=os.path.join(work, "runs")))
    r = run(["train", "--config", os.path.join(work, "train.yaml"), "--name", "serve"])
    if not check(r.returncode == 0, f"train: exit {r.returncode}: {r.stderr[-2000:]}"):
        return None
    weights = os.path.join(work, "runs", "serve", "best_weights.h5")
    images = sorted(os.path.join(data, d, n) for d in os.listdir(data) for n in os.listdir(os.path.join(data, d)))
    with open(os.path.join(work, "manual.csv"), "w") as f:
        f.write("path,label,manual,page,url\n")
        for i, p in enumerate(images):
            label = os.path.basename(os.path.dirname(p))
            manual = "<script>alert(1)</script>" if i == 1 else f"Manual {label}"
            f.write(f'{p},{label},"{manual}",{i + 1},https://example.com/m?id={i}&x=1\n')
    index = os.path.join(work, "index.h5")
    r = run(["embed", "--weights", weights, "--images", os.path.join(work, "manual.csv"), "--out", index,
             "--threads", "2"])
    if not check(r.returncode == 0, f"embed: exit {r.returncode}: {r.stderr[-2000:]}"):
        return None
    return {"index": index, "weights": weights, "images": images, "work": work}


def search_cli(index, weights, image, k):
    r = run(["search", "--index", index, "--weights", weights, "--image", image, "-k", str(k), "--json",
             "--threads", "2"])
    check(r.returncode == 0, f"search {image}: {r.stderr}")
    return json.loads(r.stdout) if r.returncode == 0 else None


class Server:
    LOG_DIR = None  # when set, each server's log is written there at stop (kept on failure)
    started = 0

    def __init__(self, index, *args):
        Server.started += 1
        self.number = Server.started
        self.proc = subprocess.Popen([BIN, "serve", "--index", index, "--port", "0", "--threads", "2"] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log = []
        self.port = None
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()
        self.thread = threading.Thread(target=drain, daemon=True)
        self.thread.start()
        ready.wait(60)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def text(self):
        return "".join(self.log)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.thread.join(5)
        if Server.LOG_DIR:
            with open(os.path.join(Server.LOG_DIR, f"server-{self.number}.log"), "w") as f:
                f.write(self.text())
        return code


def request(url, method="GET", body=None, headers=None, timeout=60):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def multipart(fields=None, files=None):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def search(server, image_bytes, k=5, filename="query.png", extra=None):
    """POST /search with the image as a multipart upload: (status, parsed JSON or None)."""
    fields = {"k": str(k)}
    fields.update(extra or {})
    body, ctype = multipart(fields, {"image": (filename, image_bytes)})
    status, _, data = request(server.url("/search"), "POST", body, {"Content-Type": ctype})
    try:
        return status, json.loads(data)
    except ValueError:
        return status, None


def same_results(served, cli, tolerance):
    """The ids, labels, paths and metadata agree and the scores differ by at most tolerance."""
    a, b = served["results"], cli["results"]
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x["id"] != y["id"] or abs(x["score"] - y["score"]) > tolerance:
            return False
        if {k: v for k, v in x.items() if k not in ("score", "relevant")} != \
                {k: v for k, v in y.items() if k not in ("score", "relevant")}:
            return False
    return True


def png_bytes(width, height, seed):
    """A deterministic RGB PNG (pattern from seed), written with zlib alone."""
    import zlib
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes(((x * (seed + 3) + y * 7) % 256, (y * (seed + 5) + x) % 256, (seed * 40 + x * y) % 256))
        rows.append(bytes(row))
    return png_with_header(width, height, zlib.compress(b"".join(rows)))


def png_with_header(width, height, idat):
    """A PNG whose IHDR claims width x height (8-bit RGB) around the given IDAT payload."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
