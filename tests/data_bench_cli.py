"""data_bench_cli.py: `simtune bench data` as a command: --help (exit 0, every option), bad usage
(exit 2), a missing dataset (exit 1 naming it), and a real run over ORL faces that reports
400 images and a positive rate. The ORL part skips (77) without $SIMTUNE_SHARED_DIR, unless
SIMTUNE_REQUIRE_ORACLES=1."""
import os
import subprocess
import sys

import testlib
from testlib import BIN, FAILURES, check


def run(*args):
    return subprocess.run([BIN, "bench", "data", *args], capture_output=True, text=True)


def main():
    testlib.inputs()
    h = run("--help")
    check(h.returncode == 0, f"--help exits 0 (got {h.returncode})")
    for opt in ("--data", "--size", "--resize", "--threads", "--batch", "--prefetch", "--epochs", "--preprocess",
                "--no-dct-scaling"):
        check(opt in h.stdout, f"--help lists {opt}")
    check(run("--threads", "0", "--data", "x").returncode == 2, "--threads 0 is a usage error (2)")
    check(run("--preprocess", "keras", "--data", "x").returncode == 2, "an unknown preprocessing is a usage error")
    check(run().returncode == 2, "a missing --data is a usage error")
    missing = run("--data", "no/such/dataset")
    check(missing.returncode == 1 and "no/such/dataset" in missing.stderr, "a missing dataset fails naming it")

    orl = os.path.join(testlib.SHARED, "datasets", "orl_faces")
    if os.path.isdir(orl):
        r = run("--data", orl, "--epochs", "1", "--size", "64", "--resize", "72", "--batch", "16")
        check(r.returncode == 0, f"ORL run exits 0 (got {r.returncode}: {r.stderr.strip()})")
        check(" 400 images " in r.stdout, "ORL run reports 400 images")
        rate = [float(l.split("=", 1)[1]) for l in r.stdout.splitlines() if l.startswith("images_per_s=")]
        check(len(rate) == 1 and rate[0] > 0, "ORL run prints one positive images_per_s")
    elif not FAILURES:
        testlib.missing_oracle("data_bench_cli.py", f"{orl} missing")
    return testlib.finish("data_bench_cli")


if __name__ == "__main__":
    sys.exit(main())
