#!/usr/bin/env python3
"""serve_setup.py WORKDIR MAKE_SYNTHETIC: the fixture of the `simtune serve` tests (serve.cmake).

Builds the tiny gallery, model and index of tests/serve_common.py (make_fixture) into WORKDIR,
through `simtune train` and `simtune embed`, and checks the index has one row per image with
the metadata columns. Exit 0 on success, 1 on a failure.
"""
import shutil
import sys

import serve_common
import testlib
from testlib import check

try:
    import h5py
except ImportError as e:
    testlib.missing_oracle("serve_setup.py", e)


def main():
    work, make_synthetic = testlib.inputs(["WORKDIR", "MAKE_SYNTHETIC"])
    shutil.rmtree(work, ignore_errors=True)
    fx = serve_common.make_fixture(work, make_synthetic)
    if fx:
        with h5py.File(fx["index"], "r") as h:
            check(h["embeddings"].shape == (24, 16), f"index shape {h['embeddings'].shape}")
            check([c.decode() for c in h["metadata_columns"][()]] == ["manual", "page", "url"], "metadata columns")
    return testlib.finish("serve_setup", [])


if __name__ == "__main__":
    sys.exit(main())
