"""testlib.py: what the Python test scripts of tests/ share; each does `import testlib` (python puts
a script's own folder first on sys.path, so no setup is needed).

  check(cond, what)     one check: a false cond appends `what` to FAILURES and prints "FAIL: what"
                        on stderr; returns cond, so `if not check(...): return 1` stops early
  FAILURES              the failed checks so far (one list per process)
  BIN, SRC, SHARED      the simtune binary (SIMTUNE_BIN), the source tree (SIMTUNE_SOURCE_DIR) and
                        the shared data (SIMTUNE_SHARED_DIR, else SRC/../shared); ctest sets all
                        three (tests/CMakeLists.txt); unset, BIN is None and SRC empty
  inputs(names, env, status)
                        the script's positional arguments, one per name in `names`, once every
                        environment variable in `env` is set; else a usage line and exit `status`
                        (1: the harness called it wrongly; 77: a script that skips instead)
  REQUIRE_ORACLES       SIMTUNE_REQUIRE_ORACLES=1: a missing oracle fails instead of skipping
  missing_oracle(script, reason)
                        an oracle (PyTorch, h5py, PIL ...) or the shared data is missing: prints
                        the reason and exits 77 (ctest: skipped), or 1 under REQUIRE_ORACLES
  float32_datasets(path, keep)
                        {name: numpy array} of the float32 datasets of an HDF5 file whose name
                        passes keep(name); None without h5py/numpy (nothing to compare then; a
                        failed check under REQUIRE_ORACLES)
  finish(name, work, note)
                        the closing block of a script: prints "NAME: N failures[, NOTE]"; on
                        failure keeps the folders `work` for inspection and says so, else removes
                        them; returns the exit status for sys.exit (0 all passed, 1 otherwise)
"""
import os
import shutil
import sys

FAILURES = []
BIN = os.environ.get("SIMTUNE_BIN")
SRC = os.environ.get("SIMTUNE_SOURCE_DIR", "")
SHARED = os.path.abspath(os.environ.get("SIMTUNE_SHARED_DIR", os.path.join(SRC, "..", "shared")))
REQUIRE_ORACLES = os.environ.get("SIMTUNE_REQUIRE_ORACLES") == "1"


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def inputs(names=(), env=("SIMTUNE_BIN",), status=1):
    missing = [v for v in env if not os.environ.get(v)]
    if missing or len(sys.argv) != len(names) + 1:
        script = os.path.basename(sys.argv[0])
        usage = " ".join([f"{v}=..." for v in env] + [script] + list(names))
        print(f"usage: {usage} (ctest sets them; missing: {', '.join(missing) or 'arguments'})",
              file=sys.stderr)
        sys.exit(status)
    return sys.argv[1:]


def missing_oracle(script, reason):
    print(f"{script}: {reason}", file=sys.stderr)
    sys.exit(1 if REQUIRE_ORACLES else 77)


def float32_datasets(path, keep=lambda name: True):
    try:
        import h5py
        import numpy as np
    except ImportError:
        check(not REQUIRE_ORACLES, "h5py/numpy missing under SIMTUNE_REQUIRE_ORACLES=1")
        return None
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype == np.float32 and keep(name):
            out[name] = obj[()]
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def finish(name, work=(), note=""):
    print(f"{name}: {len(FAILURES)} failures" + (f", {note}" if note else ""))
    if FAILURES:
        for folder in work:
            print(f"{name}: kept {folder} for inspection", file=sys.stderr)
        return 1
    for folder in work:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
