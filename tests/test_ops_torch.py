#!/usr/bin/env python3
"""test_ops_torch.py: the CPU backend's conv, batch norm (train), max pool and global pools
against PyTorch 1.13, forward and backward.

Usage: test_ops_torch.py RUNNER   (RUNNER = the ops_torch_runner binary, tests/test_ops_torch.c)

For each case the script draws float32 inputs, writes them in our layouts (NHWC activations,
HWIO kernels) to a temporary directory, runs RUNNER there, and compares RUNNER's outputs with
PyTorch computing in float64 on the same float32 values, converted to NCHW / OIHW. Asymmetric and
Keras-style zero padding is applied in PyTorch with F.pad (zeros, or -inf for PyTorch-style max
pool padding) followed by an unpadded op.

Tolerances (relative error by norm, ||ours - ref|| / ||ref||, ref in float64):
  forward  1e-5: our float32 results accumulate at most ~600 products (3x3x64 conv taps) or
           a few thousand rows (BN statistics, accumulated in double); float32 rounding
           (6e-8 per operation) gives ~1e-6 relative by norm, so 1e-5 leaves 10x margin while an
           indexing or padding error shows up as O(1).
  backward 1e-4: gradients chain two float32 reductions (e.g. BN dx uses sums over all rows,
           conv dw sums N*P*Q products), typically 1e-6..1e-5; 1e-4 leaves margin for oneDNN's
           summation order while a missing term is still O(1e-2) or more.
Exit status: 0 pass, 1 failure, 77 skip when torch is missing (a failure when
SIMTUNE_REQUIRE_ORACLES=1).
"""
import os
import subprocess
import sys
import tempfile

import testlib
from testlib import check

FORWARD_TOL = 1e-5
BACKWARD_TOL = 1e-4

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    testlib.missing_oracle("test_ops_torch.py",
                           f"PyTorch oracle unavailable ({e}); run with Debian's /usr/bin/python3")

rng = np.random.default_rng(20261122)


def f32(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def run_case(op, params, inputs, outputs):
    """Write inputs, run the runner, return {name: flat float32 array} of outputs."""
    with tempfile.TemporaryDirectory(prefix="ops_torch_") as d:
        with open(os.path.join(d, "case.txt"), "w") as f:
            f.write(op + " " + " ".join(str(p) for p in params) + "\n")
        for name, arr in inputs.items():
            np.ascontiguousarray(arr, dtype=np.float32).tofile(os.path.join(d, name + ".bin"))
        res = subprocess.run([sys.argv[1], d], capture_output=True, text=True)
        if not check(res.returncode == 0, f"{op} {params}: runner exit {res.returncode}: {res.stderr.strip()}"):
            return None
        return {n: np.fromfile(os.path.join(d, n + ".bin"), dtype=np.float32) for n in outputs}


def compare(case, name, ours, ref, tol):
    ref = np.asarray(ref, dtype=np.float64).ravel()
    ours = np.asarray(ours, dtype=np.float64).ravel()
    if not check(ours.shape == ref.shape, f"{case}: {name}: {ours.size} values, expected {ref.size}"):
        return
    den = np.linalg.norm(ref)
    err = np.linalg.norm(ours - ref) / (den if den > 0 else 1e-30)
    status = "ok" if err <= tol else "FAIL"
    print(f"  {name:18s} rel err {err:.2e} (tol {tol:.0e}) {status}")
    check(err <= tol, f"{case}: {name}: relative error {err:.3g} > {tol:g}")


def t64(a, requires_grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def nhwc(t):  # torch NCHW -> numpy NHWC
    return t.detach().permute(0, 2, 3, 1).numpy()


def conv_case(name, n, h, w, c, k, r, s, stride, pads, relu, bias):
    sh, sw = stride
    pt, pb, pl, pr = pads
    print(f"conv {name}")
    x, wt, dy_shape = f32(n, h, w, c), f32(r, s, c, k, lo=-0.3, hi=0.3), None
    b = f32(k)
    p = (h + pt + pb - r) // sh + 1
    q = (w + pl + pr - s) // sw + 1
    dy = f32(n, p, q, k)
    inputs = {"x": x, "w": wt, "dy": dy}
    if bias:
        inputs["b"] = b
    out = run_case("conv", [n, h, w, c, k, r, s, sh, sw, pt, pb, pl, pr, int(relu), int(bias)],
                   inputs, ["y", "dx", "dw", "db"])
    if out is None:
        return
    xt = t64(x.transpose(0, 3, 1, 2), True)
    wt_t = t64(wt.transpose(3, 2, 0, 1), True)  # HWIO -> OIHW
    bt = t64(b, True) if bias else None
    y = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt_t, bt, stride=(sh, sw))
    if relu:
        y = F.relu(y)
    y.backward(t64(dy.transpose(0, 3, 1, 2)))
    compare(name, "y", out["y"], nhwc(y), FORWARD_TOL)
    compare(name, "dx", out["dx"], nhwc(xt.grad), BACKWARD_TOL)
    compare(name, "dw", out["dw"], wt_t.grad.permute(2, 3, 1, 0).numpy(), BACKWARD_TOL)
    if bias:
        compare(name, "dbias", out["db"], bt.grad.numpy(), BACKWARD_TOL)


def bn_case(name, n, h, w, c, relu, eps, momentum, offset):
    print(f"batch norm train {name}")
    x = f32(n, h, w, c) * 2.0 + offset
    gamma, beta = f32(c, lo=0.5, hi=1.5), f32(c)
    rm, rv = f32(c), f32(c, lo=0.5, hi=2.0)
    dy = f32(n, h, w, c)
    out = run_case("bn", [n, h, w, c, int(relu), repr(float(np.float32(eps))),
                          repr(float(np.float32(momentum)))],
                   {"x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
                    "dy": dy},
                   ["y", "running_mean_out", "running_var_out", "dx", "dgamma", "dbeta"])
    if out is None:
        return
    xt = t64(x.transpose(0, 3, 1, 2), True)
    gt, bt = t64(gamma, True), t64(beta, True)
    rmt, rvt = t64(rm), t64(rv)
    y = F.batch_norm(xt, rmt, rvt, gt, bt, training=True, momentum=float(np.float32(momentum)),
                     eps=float(np.float32(eps)))
    if relu:
        y = F.relu(y)
    y.backward(t64(dy.transpose(0, 3, 1, 2)))
    compare(name, "y", out["y"], nhwc(y), FORWARD_TOL)
    compare(name, "running_mean", out["running_mean_out"], rmt.numpy(), FORWARD_TOL)
    compare(name, "running_var", out["running_var_out"], rvt.numpy(), FORWARD_TOL)
    compare(name, "dx", out["dx"], nhwc(xt.grad), BACKWARD_TOL)
    compare(name, "dgamma", out["dgamma"], gt.grad.numpy(), BACKWARD_TOL)
    compare(name, "dbeta", out["dbeta"], bt.grad.numpy(), BACKWARD_TOL)


def maxpool_case(name, n, h, w, c, r, s, stride, pads, zero):
    sh, sw = stride
    pt, pb, pl, pr = pads
    print(f"max pool {name}")
    x = f32(n, h, w, c)  # negative values too: zero padding then wins some windows
    p = (h + pt + pb - r) // sh + 1
    q = (w + pl + pr - s) // sw + 1
    dy = f32(n, p, q, c)
    out = run_case("maxpool", [n, h, w, c, r, s, sh, sw, pt, pb, pl, pr, int(zero)],
                   {"x": x, "dy": dy}, ["y", "dx"])
    if out is None:
        return
    xt = t64(x.transpose(0, 3, 1, 2), True)
    padded = F.pad(xt, (pl, pr, pt, pb), value=0.0 if zero else float("-inf"))
    y = F.max_pool2d(padded, (r, s), stride=(sh, sw))
    y.backward(t64(dy.transpose(0, 3, 1, 2)))
    compare(name, "y", out["y"], nhwc(y), FORWARD_TOL)
    compare(name, "dx", out["dx"], nhwc(xt.grad), BACKWARD_TOL)


def gpool_case(name, n, hw, c, kind, p=3.0, eps=1e-6):
    print(f"global pool {name}")
    x = f32(n, hw, c, lo=-0.2, hi=2.0)  # some values below eps: GeM's clamp is exercised
    dy = f32(n, c)
    out = run_case("gpool", [n, hw, c, kind, p, eps], {"x": x, "dy": dy}, ["y", "dx"])
    if out is None:
        return
    xt = t64(x, True)
    if kind == 0:
        y = xt.mean(dim=1)
    elif kind == 1:
        y = xt.max(dim=1).values
    else:
        y = xt.clamp(min=float(np.float32(eps))).pow(p).mean(dim=1).pow(1.0 / p)
    y.backward(t64(dy))
    compare(name, "y", out["y"], y.detach().numpy(), FORWARD_TOL)
    compare(name, "dx", out["dx"], xt.grad.numpy(), BACKWARD_TOL)


def main():
    if len(sys.argv) != 2:
        print("usage: test_ops_torch.py RUNNER", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(2)
    conv_case("3x3 s1 pad 1 + bias", 2, 14, 14, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), False, True)
    conv_case("3x3 s2 Keras same (pad 0/1)", 2, 15, 16, 8, 8, 3, 3, (2, 2), (0, 1, 0, 1), False,
              False)
    conv_case("3x3 s2 asym pad 1/0/0/2 + bias", 2, 9, 10, 8, 16, 3, 3, (2, 2), (1, 0, 0, 2),
              False, True)
    conv_case("7x7 s2 pad 3 stem + bias + relu", 1, 32, 30, 3, 16, 7, 7, (2, 2), (3, 3, 3, 3),
              True, True)
    conv_case("1x1 s2 projection", 2, 14, 14, 16, 32, 1, 1, (2, 2), (0, 0, 0, 0), False, False)
    conv_case("1x1 s1 64->128 + relu", 2, 7, 7, 64, 128, 1, 1, (1, 1), (0, 0, 0, 0), True, True)
    conv_case("3x3 s1 64->64 ResNet", 2, 14, 14, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1), False,
              False)
    bn_case("eps 1e-3 m 0.1", 4, 5, 5, 16, False, 1e-3, 0.1, 0.0)
    bn_case("relu, Keras eps, m 0.01", 4, 5, 5, 16, True, 1.001e-5, 0.01, 0.0)
    bn_case("8x14x14x64, mean 3 (cancellation)", 8, 14, 14, 64, True, 1e-5, 0.1, 3.0)
    maxpool_case("3x3 s2 zero pad 1 (Keras)", 2, 13, 12, 8, 3, 3, (2, 2), (1, 1, 1, 1), True)
    maxpool_case("3x3 s2 -inf pad 1 (PyTorch)", 2, 13, 12, 8, 3, 3, (2, 2), (1, 1, 1, 1), False)
    maxpool_case("3x3 s2 zero pad 0/1/0/1", 2, 12, 12, 8, 3, 3, (2, 2), (0, 1, 0, 1), True)
    maxpool_case("2x2 s2 no pad", 1, 8, 8, 4, 2, 2, (2, 2), (0, 0, 0, 0), False)
    gpool_case("avg", 4, 49, 32, 0)
    gpool_case("max", 4, 49, 32, 1)
    gpool_case("GeM p=3", 4, 49, 32, 2)
    sys.exit(testlib.finish("test_ops_torch"))


if __name__ == "__main__":
    main()
