#!/usr/bin/env python3
"""serve_bench.py: requests/s and latency of `simtune serve` against `simtune search` per query.

  bench/serve_bench.py --bin build/simtune --index E.h5 [--weights W.h5] [--clients 1,4,16]
                       [--requests 100] [--baseline 10] [--threads 0] [--batch 8]

Starts `simtune serve --port 0` on the index, warms it up, then for each client count C runs C
threads that each POST --requests searches (k = 10, the index's own images in turn, multipart)
over keep-alive-free loopback connections, and reports requests/s (all requests / wall time),
p50 and p99 latency (per request, client side) and the mean batch size (from /metrics).
The baseline runs `simtune search --json` as a process per query (--baseline queries, one at
a time): what answering a query cost before serve, model and index loading included.
Prints one Markdown table (docs/benchmarks.md). Standard library plus h5py (the image paths).
"""
import argparse
import http.client
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid

import h5py


def post(port, data):
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q"\r\n\r\n'.encode() + data
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n10\r\n--{boundary}--\r\n".encode())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/search", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}")
    return time.perf_counter() - t0


def batch_stats(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    total = int(re.search(r"^simtune_batch_size_sum (\d+)$", text, re.M).group(1))
    count = int(re.search(r"^simtune_batch_size_count (\d+)$", text, re.M).group(1))
    return total, count


def run_clients(port, images, clients, requests):
    latencies, lock = [], threading.Lock()

    def client(c):
        mine = [post(port, images[(c * 31 + i) % len(images)]) for i in range(requests)]
        with lock:
            latencies.extend(mine)
    before = batch_stats(port)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = batch_stats(port)
    mean_batch = (after[0] - before[0]) / max(1, after[1] - before[1])
    q = statistics.quantiles(latencies, n=100)
    return len(latencies) / wall, q[49], q[98], mean_batch


def baseline(args, paths):
    times = []
    for p in paths[: args.baseline]:
        cmd = [args.bin, "search", "--index", args.index, "--weights", args.weights, "--image", p, "-k", "10",
               "--json", "--threads", str(args.threads)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--weights")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--baseline", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    with h5py.File(args.index, "r") as h:
        paths = [p.decode() for p in h["paths"][()]]
        if args.weights is None:  # what serve uses by default; search needs it named
            if "model" not in h.attrs:
                sys.exit("the index records no weights: give --weights")
            model = h.attrs["model"]
            args.weights = model.decode() if isinstance(model, bytes) else str(model)
    images = [open(p, "rb").read() for p in paths]
    cmd = [args.bin, "serve", "--index", args.index, "--port", "0", "--threads", str(args.threads), "--batch",
           str(args.batch), "--queue", "256", "--weights", args.weights]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    for line in server.stderr:
        m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # drain the log
    try:
        for i in range(20):
            post(port, images[i % len(images)])
        search_s = baseline(args, paths)
        print("| clients | requests/s | p50 ms | p99 ms | mean batch |\n|---|---|---|---|---|")
        print(f"| `simtune search` per query (1 process each) | {1 / search_s:.1f} | {search_s * 1e3:.0f} | | 1 |")
        for c in (int(x) for x in args.clients.split(",")):
            rps, p50, p99, batch = run_clients(port, images, c, args.requests)
            print(f"| {c} | {rps:.1f} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {batch:.2f} |", flush=True)
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
