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


def main():
    simtune = os.environ["SIMTUNE_BIN"]
    source = os.environ["SIMTUNE_SOURCE_DIR"]
    if not os.path.isdir(os.path.join(os.environ["SIMTUNE_SHARED_DIR"], "datasets")):
        if os.environ.get("SIMTUNE_REQUIRE_ORACLES") == "1":
            print("FAIL: ../shared/datasets is missing", file=sys.stderr)
            return 1
        print("SKIP: ../shared/datasets is missing")
        return 77
    failures = 0
    configs = sorted(glob.glob(os.path.join(source, "configs", "*.yaml")))
    if len(configs) < 4:
        print(f"FAIL: expected at least 4 configs, found {len(configs)}", file=sys.stderr)
        failures += 1
    for path in configs:
        is_sweep = open(path).read().lstrip().find("base:") >= 0 or "sweep" in os.path.basename(path)
        cmd = [simtune, "sweep", "--config", path, "--dry-run"] if is_sweep else [simtune, "train", "--config", path, "--check"]
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ok = run.returncode == 0
        print(("ok   " if ok else "FAIL ") + " ".join(cmd[1:]))
        if not ok:
            print(run.stdout, file=sys.stderr)
            failures += 1
    print(f"check_configs: {len(configs) - failures} of {len(configs)} configs valid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
