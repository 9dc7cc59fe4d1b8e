#!/usr/bin/env python3
"""test_perf_bench_cli.py: `simtune bench peak`, the counted FLOPs and % of peak of `bench
train|infer`, and --profile, through the binary as a user runs them (issue 16 item 1).

  1. `bench peak --json`: a positive FP32 figure; a bf16 figure exactly when /proc/cpuinfo lists
     avx512_bf16 (null otherwise).
  2. `bench infer` / `bench train` on tv_resnet18 at 64 px, batch 2: gflop_per_image equals the
     count made here from the architecture (an independent oracle: torchvision's resnet18
     geometry, 2 FLOPs per multiply-add): inference = every conv + nothing else (no head);
     training with the 1000-way head = 3 x (convs + dense) less the first conv's backward-data
     (nothing below it needs a gradient). percent_of_peak = images/s x GFLOP/image / peak.
  3. --profile: the rows a training step must have (conv passes, BN, eltwise, pool, head, loss,
     optimizer) with non-negative seconds whose sum does not exceed the step's wall time; an
     inference run has no backward rows. A bad --precision is a usage error (exit 2).
  4. `bench train --precision bf16`: on a CPU with avx512_bf16 it runs in bf16 (JSON precision,
     % of the bf16 peak, a reorder row for the bf16 copies); elsewhere it warns and runs fp32.
Exit 0 on success, 1 on failures. About 10 s on 2 idle cores.
"""
import json
import subprocess
import sys

import testlib
from testlib import BIN, check

testlib.inputs()


def run(args):
    return subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def resnet18_conv_flops(size):
    """(per image) FLOPs of tv_resnet18's convolutions at size x size, and of its first conv."""
    def out(h, k, s, p):
        return (h + 2 * p - k) // s + 1
    total, h = 0, size
    h1 = out(h, 7, 2, 3)
    first = 2 * h1 * h1 * 64 * 7 * 7 * 3
    total += first
    h = out(h1, 3, 2, 1)  # max-pool
    c = 64
    for stage, k in enumerate((64, 128, 256, 512)):
        for block in range(2):
            s = 2 if stage > 0 and block == 0 else 1
            ho = out(h, 3, s, 1)
            total += 2 * ho * ho * k * 9 * c      # 3x3, c -> k
            total += 2 * ho * ho * k * 9 * k      # 3x3, k -> k
            if s != 1 or c != k:
                total += 2 * ho * ho * k * c      # 1x1 projection shortcut
            h, c = ho, k
    return total, first


def check_peak():
    p = run(["bench", "peak", "--threads", "1", "--json"])
    if not check(p.returncode == 0, f"bench peak exit {p.returncode}: {p.stderr}"):
        return
    j = last_json(p)
    check(j["mode"] == "peak" and j["threads"] == 1, f"bench peak json: {j}")
    check(j["fp32_gflops"] > 0, f"fp32 peak {j['fp32_gflops']}")
    with open("/proc/cpuinfo") as f:
        has_bf16 = "avx512_bf16" in f.read().split()
    check((j["bf16_gflops"] is not None) == has_bf16,
          f"bf16 peak {j['bf16_gflops']} but cpuinfo avx512_bf16 = {has_bf16}")
    if has_bf16:
        check(j["bf16_gflops"] > 0, f"bf16 peak {j['bf16_gflops']}")


def check_model(mode):
    common = ["--arch", "tv_resnet18", "--image-size", "64", "--batch", "2", "--steps", "2",
              "--warmup", "1", "--threads", "2", "--profile", "--json"]
    p = run(["bench", mode] + common)
    if not check(p.returncode == 0, f"bench {mode} exit {p.returncode}: {p.stderr}"):
        return
    j = last_json(p)
    convs, first = resnet18_conv_flops(64)
    dense = 2 * 512 * 1000
    want = convs if mode == "infer" else 3 * (convs + dense) - first
    # the count is exact integer arithmetic in double; printed with 8 significant digits
    check(abs(j["gflop_per_image"] - want * 1e-9) <= 1e-7 * want * 1e-9,
          f"{mode}: gflop_per_image {j['gflop_per_image']}, counted here {want * 1e-9}")
    check(j["peak_gflops"] > 0, f"{mode}: peak {j.get('peak_gflops')}")
    pct = 100 * j["images_per_second"] * j["gflop_per_image"] / j["peak_gflops"]
    check(abs(j["percent_of_peak"] - pct) <= 1e-5 * pct, f"{mode}: percent_of_peak {j['percent_of_peak']} != {pct}")
    check("% of the measured fp32 peak" in p.stdout, f"{mode}: no % of peak line: {p.stdout}")
    prof = j["profile_seconds_per_step"]
    need = {"conv_fwd", "pool_fwd"}
    if mode == "train":
        need |= {"conv_bwd_data", "conv_bwd_weights", "bn_fwd", "bn_bwd", "eltwise_fwd",
                 "eltwise_bwd", "pool_bwd", "head_fwd", "head_bwd", "loss", "optimizer"}
    else:
        check(not any(k.endswith("_bwd") or "bwd_" in k for k in prof), f"infer profile has backward rows: {prof}")
    check(need <= set(prof), f"{mode}: profile rows {sorted(prof)} lack {sorted(need - set(prof))}")
    check(all(v >= 0 for v in prof.values()), f"{mode}: negative profile seconds {prof}")
    step = j["seconds"] / j["steps"]
    # the rows are disjoint timed intervals inside the step
    check(sum(prof.values()) <= step * 1.0001, f"{mode}: profile sums to {sum(prof.values())} > step {step}")
    check("profile, seconds per step" in p.stdout, f"{mode}: no profile table printed")


def check_bf16_train(has_bf16):
    p = run(["bench", "train", "--arch", "tv_resnet18", "--image-size", "64", "--batch", "2", "--steps", "1",
             "--warmup", "1", "--threads", "2", "--precision", "bf16", "--profile", "--json"])
    if not check(p.returncode == 0, f"bench train bf16 exit {p.returncode}: {p.stderr}"):
        return
    j = last_json(p)
    want = "bf16" if has_bf16 else "fp32"
    check(j["precision"] == want, f"bench train --precision bf16 ran {j['precision']}, cpu bf16 = {has_bf16}")
    check(("computing in fp32" in p.stderr) == (not has_bf16), f"fallback warning: {p.stderr!r}")
    if has_bf16:
        check("% of the measured bf16 peak" in p.stdout, f"no bf16 peak line: {p.stdout}")
        check(j["profile_seconds_per_step"].get("reorder", 0) > 0, "bf16 step without copy time")


def main():
    with open("/proc/cpuinfo") as f:
        has_bf16 = "avx512_bf16" in f.read().split()
    check_bf16_train(has_bf16)
    check_peak()
    check_model("infer")
    check_model("train")
    bad = run(["bench", "infer", "--precision", "fp16"])
    check(bad.returncode == 2 and "--precision" in bad.stderr, f"--precision fp16: exit {bad.returncode} {bad.stderr}")
    return testlib.finish("test_perf_bench_cli")


if __name__ == "__main__":
    sys.exit(main())
