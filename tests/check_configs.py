#!/usr/bin/env python3
"""check_configs.py: every ready-made config in configs/ is valid as shipped.

Train configs go through `simtune train --config F --check` (schema, ranges, input files), the
sweep through `simtune sweep --config F --dry-run` (its base config and every parameter value).
They read ../shared/datasets, so without it the test skips (77), unless SIMTUNE_REQUIRE_ORACLES=1.
"""
import glob
import os
import subprocess
import sys

import testlib
from testlib import FAILURES, check


def main():
    testlib.inputs(env=("SIMTUNE_BIN", "SIMTUNE_SOURCE_DIR"))
    simtune, source = testlib.BIN, testlib.SRC
    if not os.path.isdir(os.path.join(testlib.SHARED, "datasets")):
        testlib.missing_oracle("check_configs.py", "../shared/datasets is missing")
    configs = sorted(glob.glob(os.path.join(source, "configs", "*.yaml")))
    check(len(configs) >= 4, f"expected at least 4 configs, found {len(configs)}")
    for path in configs:
        is_sweep = open(path).read().lstrip().find("base:") >= 0 or "sweep" in os.path.basename(path)
        cmd = [simtune, "sweep", "--config", path, "--dry-run"] if is_sweep else [simtune, "train", "--config", path, "--check"]
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if check(run.returncode == 0, f"{' '.join(cmd[1:])}:\n{run.stdout}"):
            print("ok   " + " ".join(cmd[1:]))
    return testlib.finish("check_configs", note=f"{len(configs) - len(FAILURES)} of {len(configs)} configs valid")


if __name__ == "__main__":
    sys.exit(main())
