#!/usr/bin/env python3
"""topk_bench.py: `simtune topk` against FAISS IndexFlatIP, side by side in one run.

Random float32 data (seeded), gallery N x D and queries Q x D, inner product, top-k, both
limited to the same number of threads. Reports:
  - simtune: wall time of the whole process and its own search time (streaming the gallery
    from the HDF5 file, GEMM, selection), taken from its stderr line;
  - FAISS: index.add + index.search time (the same work: load vectors, GEMM, selection);
  - whether the neighbour lists are identical; lists that differ are checked to be near-ties
    (score gap below a float32 rounding bound), which both libraries may order either way;
  - the speed ratio FAISS time / simtune search time (> 1: simtune is faster), in wall time and
    in CPU time (user + sys of the simtune process; process time of FAISS's add + search).
The two run alternately --repeat times and the best time of each is kept. On a machine shared
with other jobs wall times mostly measure the scheduler; the CPU-time ratio is the steadier one.

Usage (Debian's python3 has faiss, h5py, numpy):
  /usr/bin/python3 bench/topk_bench.py --simtune BUILD/simtune [--n 100000 --d 2048 --q 2000
      --k 10 --threads 2 --workdir /tmp/simtune-topk-bench]
The data files are generated once into --workdir and reused.
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import time

import h5py
import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simtune", required=True, help="path of the simtune binary")
    p.add_argument("--n", type=int, default=100_000, help="gallery rows (default 100000)")
    p.add_argument("--d", type=int, default=2048, help="dimension (default 2048)")
    p.add_argument("--q", type=int, default=2000, help="queries (default 2000)")
    p.add_argument("--k", type=int, default=10, help="neighbours (default 10)")
    p.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs of each; best kept (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/simtune-topk-bench")
    return p.parse_args()


def make_file(path, rows, d, rng):
    if os.path.exists(path):
        with h5py.File(path, "r") as f:
            if f["embeddings"].shape == (rows, d):
                return
    x = rng.standard_normal((rows, d), dtype=np.float32)
    with h5py.File(path + ".tmp", "w") as f:
        f.create_dataset("embeddings", data=x)
    os.replace(path + ".tmp", path)


def main():
    a = parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    tag = f"{a.n}x{a.d}_{a.q}_s{a.seed}"
    gallery = os.path.join(a.workdir, f"gallery_{tag}.h5")
    queries = os.path.join(a.workdir, f"queries_{tag}.h5")
    result = os.path.join(a.workdir, f"result_{tag}.h5")
    rng = np.random.default_rng(a.seed)
    make_file(gallery, a.n, a.d, rng)
    make_file(queries, a.q, a.d, rng)
    with h5py.File(gallery, "r") as f:
        xb = f["embeddings"][:]
    with h5py.File(queries, "r") as f:
        xq = f["embeddings"][:]

    cmd = [a.simtune, "topk", "--gallery", gallery, "--queries", queries, "-k", str(a.k),
           "--metric", "ip", "--threads", str(a.threads), "--device", "cpu", "--out", result]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    import faiss
    faiss.omp_set_num_threads(a.threads)
    simtune_wall, simtune_search, simtune_cpu, faiss_time, faiss_cpu = [], [], [], [], []
    for _ in range(a.repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        simtune_wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        simtune_cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if run.returncode != 0:
            sys.exit(f"simtune topk failed ({run.returncode}): {run.stderr}")
        m = re.search(r"([0-9.]+) s\s*$", run.stderr.strip())
        simtune_search.append(float(m.group(1)) if m else simtune_wall[-1])

        t0, c0 = time.perf_counter(), time.process_time()
        index = faiss.IndexFlatIP(a.d)
        index.add(xb)
        fs, fi = index.search(xq, a.k)
        faiss_time.append(time.perf_counter() - t0)
        faiss_cpu.append(time.process_time() - c0)
        del index
    simtune_wall, simtune_search, faiss_time = min(simtune_wall), min(simtune_search), min(faiss_time)
    simtune_cpu, faiss_cpu = min(simtune_cpu), min(faiss_cpu)
    with h5py.File(result, "r") as f:
        our_i = f["indices"][:]
        our_s = f["scores"][:]

    same_lists = int(np.sum(np.all(our_i == fi, axis=1)))
    # a differing list is acceptable only where the swapped entries are float32 near-ties
    diff_rows = np.nonzero(np.any(our_i != fi, axis=1))[0]
    # float32 dot products of length D carry an error of order sqrt(D) * 6e-8 * |q| |g| with
    # blocked summation (2.7e-6 |q||g| at D = 2048): 1e-5 |q| max|g| bounds it with margin
    tol = 1e-5 * np.linalg.norm(xq.astype(np.float64), axis=1) * \
        np.max(np.linalg.norm(xb.astype(np.float64), axis=1))
    non_tie = 0
    for r in diff_rows:
        q64 = xq[r].astype(np.float64)
        ours = np.sort(xb[our_i[r]].astype(np.float64) @ q64)[::-1]
        theirs = np.sort(xb[fi[r]].astype(np.float64) @ q64)[::-1]
        if np.any(np.abs(ours - theirs) > tol[r]):
            non_tie += 1
    score_err = float(np.max(np.abs(our_s - fs)))

    print(f"data: gallery {a.n} x {a.d}, queries {a.q}, k {a.k}, inner product, {a.threads} threads, "
          f"best of {a.repeat} alternating runs, load average before: {os.getloadavg()[0]:.1f}")
    print(f"command: {' '.join(cmd)}")
    print(f"simtune topk: search {simtune_search:.3f} s (process wall {simtune_wall:.3f} s, "
          f"CPU {simtune_cpu:.3f} s)")
    print(f"faiss {faiss.__version__} IndexFlatIP: add+search {faiss_time:.3f} s (CPU {faiss_cpu:.3f} s)")
    print(f"speed ratio faiss / simtune: wall {faiss_time / simtune_search:.2f}x "
          f"(process wall {faiss_time / simtune_wall:.2f}x), CPU time {faiss_cpu / simtune_cpu:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"identical neighbour lists: {same_lists} of {a.q}; differing lists that are not "
          f"near-ties: {non_tie}; max |score difference| {score_err:.3g}")
    return 0 if non_tie == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
