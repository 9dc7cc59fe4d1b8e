"""test_gpu_bf16_cli.py: `--precision bf16 --device cuda` as a user runs it (issue 16 item 5).

`simtune bench train` (forward, loss, backward, SGD step: the conv pair and the kernel cache across
steps) and `simtune bench infer` (an inference model: frozen BN folded into the kernels) of
tv_resnet18 at 64 px, batch 4, on the CUDA backend with --precision bf16: each exits 0, prints no
fallback warning ("warning: precision bf16 ..."), and its --json says it ran in bf16 at a finite
positive speed. Numerical agreement with the CPU is test_gpu_bf16's (C, through the model API).

Label gpu: exits 77 when the CUDA backend does not open (`simtune doctor` says why), a failure
under SIMTUNE_REQUIRE_GPU=1; also a failure on a device before compute capability 8.0, where
bf16 falls back to FP32: run it on the sm_80/sm_90 machines the backend is built for.
"""
import json
import math
import sys

import testlib
from testlib import check
from test_gpu_e2e import cuda_or_skip, run

BENCH = ["--arch", "tv_resnet18", "--image-size", "64", "--batch", "4", "--steps", "2",
         "--warmup", "1", "--device", "cuda", "--precision", "bf16", "--json"]


def bench(mode):
    r = run(["bench", mode] + BENCH)
    if not check(r.returncode == 0,
                 f"bench {mode} --precision bf16 --device cuda: exit {r.returncode}"):
        return
    check("warning: precision bf16" not in r.stderr,
          f"bench {mode}: bf16 fell back on CUDA: {r.stderr.strip()[-300:]}")
    lines = r.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    check(result.get("precision") == "bf16",
          f"bench {mode}: --json precision {result.get('precision')!r}, want 'bf16'")
    ips = result.get("images_per_second")
    check(isinstance(ips, (int, float)) and math.isfinite(ips) and ips > 0,
          f"bench {mode}: images_per_second {ips!r}")


def main():
    testlib.inputs(status=77)
    cuda_or_skip()
    bench("train")
    bench("infer")
    return testlib.finish("test_gpu_bf16_cli")


if __name__ == "__main__":
    sys.exit(main())
