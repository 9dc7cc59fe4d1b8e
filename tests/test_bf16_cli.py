#!/usr/bin/env python3
"""test_bf16_cli.py: `precision: bf16` through `simtune embed --precision` on real images (issue 16
item 3), and its fallback.

Weights: a tv_resnet50 written by tests/torch_resnet.py's recipe (random He kernels, non-trivial
BN statistics, residual branches damped like a trained network's), so every layer matters.
Images: 20 ORL faces (s1-s4) and 20 COIL-100 objects (obj002-obj005), read in place from
$SIMTUNE_SHARED_DIR/datasets, at 128 px.

  1. On a CPU with AVX512_BF16 (/proc/cpuinfo): for EVERY image the bf16 embedding has a cosine
     >= 0.999 with the fp32 one, both as embedded and less the set's mean (pooled ReLU features
     share a large common part that alone puts any two embeddings near cosine 1; the centred
     vectors are what tells images apart). bf16 keeps 8 mantissa bits (relative error 2^-9 per
     rounded input); with FP32 accumulation this x86 run measured 1 - 3e-6 as embedded and
     1 - 3e-4 centred, so 0.999 leaves a margin of 3. The vectors differ from the fp32 ones
     (bf16 really ran) and no warning is printed.
  2. Fallback: with oneDNN limited to avx512_core_vnni (ONEDNN_MAX_CPU_ISA, a CPU without bf16
     as oneDNN sees it), --precision bf16 warns "precision bf16 ... computing in fp32" and gives
     the fp32 embeddings (to 1e-5: oneDNN may pick another FP32 kernel under the limit, which
     sums in another order). On a CPU without AVX512_BF16 the plain bf16 run is that fallback.
  3. A bad --precision is a usage error (exit 2).
  4. On a CPU with AVX512_BF16, `--layer conv4_block6_1_relu` (an inner ReLU map, which a bf16
     model would otherwise store as bf16 for the conv after it) gives the same >= 0.999 cosine
     per image against fp32 (measured 1 - 4e-6; a map read as FP32 while holding bf16 bits gave
     -0.07).
Exit 0 on success, 1 on failures, 77 when torch/h5py or the datasets are absent. About 30 s on
2 idle cores.
"""
import os
import subprocess
import sys
import tempfile

import testlib
from testlib import BIN, check

testlib.inputs()
try:
    import h5py
    import numpy as np
    import torch
    import torch_resnet
except ImportError as e:
    testlib.missing_oracle("test_bf16_cli.py", e)

DATA = os.path.join(testlib.SHARED, "datasets")
if not os.path.isdir(os.path.join(DATA, "orl_faces")) or not os.path.isdir(os.path.join(DATA, "coil100")):
    testlib.missing_oracle("test_bf16_cli.py", f"no ORL / COIL-100 under {DATA}")


def write_weights(path):
    gen = torch.Generator().manual_seed(5)
    net = torch_resnet.TorchvisionResNet(50)
    torch_resnet.randomize(net.p, gen)
    torch_resnet.damp_residual_branches(net.p)
    with h5py.File(path, "w") as f:
        f.attrs["arch"] = "tv_resnet50"
        torch_resnet.write_weights(f, net.p)


def write_manifest(path):
    rows = []
    for person in ("s1", "s2", "s3", "s4"):
        rows += [(os.path.join(DATA, "orl_faces", person, f"{i}.png"), person) for i in range(1, 6)]
    for obj in ("obj002", "obj003", "obj004", "obj005"):
        n = obj[3:].lstrip("0")
        rows += [(os.path.join(DATA, "coil100", obj, f"obj{n}__{a}.png"), obj) for a in (0, 5, 10, 15, 20)]
    with open(path, "w") as f:
        f.write("path\tlabel\n")
        f.writelines(f"{p}\t{label}\n" for p, label in rows)
    return len(rows)


def embed(work, weights, manifest, name, precision, env=None, extra=()):
    out = os.path.join(work, name + ".h5")
    p = subprocess.run([BIN, "embed", "--weights", weights, "--images", manifest, "--out", out,
                        "--image-size", "128", "--threads", "2", "--precision", precision,
                        *extra],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=dict(os.environ, **(env or {})))
    if not check(p.returncode == 0, f"embed {name}: exit {p.returncode}: {p.stderr}"):
        return None, p.stderr
    with h5py.File(out, "r") as f:
        return f["embeddings"][()].astype(np.float64), p.stderr


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_layer_map(work, weights, manifest):
    """`--layer` exports an inner map: in bf16 a ReLU output that only a conv reads would be a
    bf16 operand; the delimiting layer stays FP32, so its pooled map has the same 0.999 bound."""
    layer = ("--layer", "conv4_block6_1_relu")
    fp32, _ = embed(work, weights, manifest, "layer_fp32", "fp32", extra=layer)
    bf16, _ = embed(work, weights, manifest, "layer_bf16", "bf16", extra=layer)
    if fp32 is None or bf16 is None:
        return
    cos = cosines(fp32, bf16)
    print(f"--layer {layer[1]}: bf16 vs fp32 cosine min {cos.min():.6f}")
    check(cos.min() >= 0.999, f"--layer {layer[1]}: bf16 cosine {cos.min():.6f} < 0.999")


def main():
    with open("/proc/cpuinfo") as f:
        has_bf16 = "avx512_bf16" in f.read().split()
    work = tempfile.mkdtemp(prefix="bf16_cli_", dir=".")
    weights, manifest = os.path.join(work, "w.h5"), os.path.join(work, "images.tsv")
    write_weights(weights)
    n = write_manifest(manifest)
    fp32, _ = embed(work, weights, manifest, "fp32", "fp32")
    bf16, err = embed(work, weights, manifest, "bf16", "bf16")
    if fp32 is None or bf16 is None:
        return testlib.finish("test_bf16_cli", [work])
    check(fp32.shape[0] == n and bf16.shape == fp32.shape, f"shapes {fp32.shape} {bf16.shape}, {n} images")
    warned = "precision bf16" in err and "fp32" in err
    if has_bf16:
        cos = cosines(fp32, bf16)
        print(f"bf16 vs fp32 cosine: min {cos.min():.6f}, mean {cos.mean():.6f} over {n} images")
        check(cos.min() >= 0.999, f"bf16 embedding cosine {cos.min():.6f} < 0.999 (image {int(cos.argmin())})")
        # what tells images apart: the vectors less the set's mean (pooled ReLU features share a
        # large common part, which alone would make any two embeddings' cosine near 1)
        mean = fp32.mean(0)
        ccos = cosines(fp32 - mean, bf16 - mean)
        print(f"centred: cosine min {ccos.min():.6f}")
        check(ccos.min() >= 0.999, f"bf16 centred embedding cosine {ccos.min():.6f} < 0.999")
        check(np.abs(fp32 - bf16).max() > 1e-6, "bf16 embeddings equal the fp32 ones: bf16 did not run")
        check(not warned, f"a CPU with bf16 warned: {err}")
        check_layer_map(work, weights, manifest)
        limited, err = embed(work, weights, manifest, "limited", "bf16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"})
    else:
        limited = bf16
    check("precision bf16" in err and "computing in fp32" in err, f"the fallback did not warn: {err}")
    if limited is not None:
        check(np.abs(limited - fp32).max() <= 1e-5, f"fallback differs from fp32 by {np.abs(limited - fp32).max()}")
    bad = subprocess.run([BIN, "embed", "--weights", weights, "--images", manifest, "--out",
                          os.path.join(work, "x.h5"), "--precision", "half"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(bad.returncode == 2 and "--precision" in bad.stderr, f"--precision half: exit {bad.returncode} {bad.stderr}")
    return testlib.finish("test_bf16_cli", [work])


if __name__ == "__main__":
    sys.exit(main())
