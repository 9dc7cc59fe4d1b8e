#!/usr/bin/env python3
"""test_weights_cli.py FIXTURE_DIR EXPORT [SIMTUNE]: `simtune inspect` and tools/torchvision2h5.py end
to end. SIMTUNE is the program run as `SIMTUNE inspect ...` (default: env SIMTUNE_BIN).

  - inspect --help / bad usage exit codes (0 / 2);
  - inspect --json on the Keras fixtures agrees with an h5py reading of the same file (every
    weighted layer and shape), detects arch/top/format, and exits 0;
  - every bad file (truncated, corrupt, not HDF5, empty, Keras 3 without names, wrong shapes,
    missing layers) exits 1 with a message naming the file;
  - torchvision2h5.py: --help, bad input (exit 1 naming the file / the key), and the converted
    tensors equal the .pth tensors after the documented transposes;
  - EXPORT (written by test_weights_h5 with simtune's C writer) is readable the way Keras reads
    legacy files: layer_names / weight_names lists and the datasets they name;
  - the embedding recipe: inspect --json shows the export's (64 px, avg, 32-d head) and none for
    a torchvision conversion; embed follows the export's and keeps the defaults (224 px, avg)
    for the conversion, saying which it used.
Exit 77 when h5py/torch are missing (1 with SIMTUNE_REQUIRE_ORACLES=1).
"""
import json
import os
import subprocess
import sys

import testlib
from testlib import check

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:
    testlib.missing_oracle("test_weights_cli.py", e)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def text(value):
    """h5py returns variable-length string attributes as str, fixed-length ones as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def keras_attr_list(group, name):
    """Keras' load_attributes_from_hdf5_group."""
    if name in group.attrs:
        return [n.decode("utf8") if hasattr(n, "decode") else n for n in group.attrs[name]]
    out, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        out += [n.decode("utf8") if hasattr(n, "decode") else n for n in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return out


def keras_read(path):
    """{layer: [(weight name, shape)]} for weighted layers, the way Keras' legacy loader reads."""
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        out = {}
        for name in keras_attr_list(g, "layer_names"):
            wnames = keras_attr_list(g[name], "weight_names")
            if wnames:
                out[name] = [(w, g[name][w].shape) for w in wnames]
        return out


def test_inspect(simtune, fx):
    rc, out, _ = run(simtune, "inspect", "--help")
    check(rc == 0 and "--json" in out, "inspect --help: exit 0 and lists --json")
    rc, _, err = run(simtune, "inspect")
    check(rc == 2 and "--help" in err, f"inspect without FILE: exit {rc}, want 2")
    rc, _, _ = run(simtune, "inspect", "--bogus", f"{fx}/weights_r50.h5")
    check(rc == 2, f"inspect --bogus: exit {rc}, want 2")

    for name, fmt, top in [("weights_r50.h5", "keras2", False),
                           ("weights_r50_full_chunked.h5", "keras2_full_model", False),
                           ("weights_r50_top_probs.h5", "keras2", True)]:
        path = f"{fx}/{name}"
        rc, out, err = run(simtune, "inspect", "--json", path)
        check(rc == 0, f"inspect {name}: exit {rc}: {err}")
        try:
            info = json.loads(out)
        except ValueError as e:
            check(False, f"inspect --json {name}: not JSON ({e})")
            continue
        check(info["arch"] == "resnet50" and info["format"] == fmt and info["top"] == top
              and info["preprocess"] == "caffe" and abs(info["bn_epsilon"] - 1.001e-5) < 1e-10,
              f"{name}: arch {info['arch']} format {info['format']} top {info['top']}")
        want = keras_read(path)
        got = {l["name"]: [tuple(w["shape"]) for w in l["weights"]] for l in info["layers"]}
        check(got == {k: [s for _w, s in v] for k, v in want.items()},
              f"{name}: layers/shapes differ from h5py's reading")
        check(info["params"] == sum(int(np.prod(s)) for v in want.values() for _w, s in v),
              f"{name}: parameter count")
    rc, out, _ = run(simtune, "inspect", f"{fx}/weights_r50_top_probs.h5")
    check(rc == 0 and "classifier 'probs' with 1000 classes" in out, "text output names the classifier")

    for name in ["weights_truncated.h5", "weights_corrupt_meta.h5", "weights_text.h5", "weights_empty.h5",
                 "weights_k3_nonames.weights.h5", "weights_wrong_shape.h5", "weights_missing_layers.h5"]:
        rc, _, err = run(simtune, "inspect", f"{fx}/{name}")
        check(rc == 1 and name in err, f"inspect {name}: exit {rc} (want 1), stderr {err.strip()[:200]}")
    rc, out, err = run(simtune, "inspect", f"{fx}/weights_missing_layers.h5")
    check("conv3_block2_1_conv/kernel" in out, "missing layers are listed")


def test_converter(fx, tmp):
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "torchvision2h5.py")
    rc, out, _ = run(sys.executable, tool, "--help")
    check(rc == 0 and "--notop" in out, "torchvision2h5.py --help")
    rc, _, err = run(sys.executable, tool, f"{fx}/weights_text.h5", f"{tmp}/x.h5")
    check(rc == 1 and "weights_text.h5" in err, f"converter on a non-.pth file: exit {rc}: {err.strip()}")
    sd = torch.load(f"{fx}/weights_tv18.pth")
    broken = {k: v for k, v in sd.items() if k != "layer2.0.bn1.running_var"}
    torch.save(broken, f"{tmp}/broken.pth")
    rc, _, err = run(sys.executable, tool, f"{tmp}/broken.pth", f"{tmp}/x.h5", "--arch", "resnet18")
    check(rc == 1 and "layer2.0.bn1.running_var" in err, f"missing key named: exit {rc}: {err.strip()}")
    check(not os.path.exists(f"{tmp}/x.h5"), "no output written on failure")

    with h5py.File(f"{fx}/weights_tv18.h5", "r") as f:
        def ds(layer, w):
            return f[layer][f"{layer}/{w}:0"][()]
        pairs = [(ds("conv1_conv", "kernel"), sd["conv1.weight"].numpy().transpose(2, 3, 1, 0)),
                 (ds("conv3_block1_0_conv", "kernel"), sd["layer2.0.downsample.0.weight"].numpy().transpose(2, 3, 1, 0)),
                 (ds("conv3_block1_0_bn", "moving_variance"), sd["layer2.0.downsample.1.running_var"].numpy()),
                 (ds("conv5_block2_2_bn", "gamma"), sd["layer4.1.bn2.weight"].numpy()),
                 (ds("predictions", "kernel"), sd["fc.weight"].numpy().T),
                 (ds("predictions", "bias"), sd["fc.bias"].numpy())]
        for i, (got, want) in enumerate(pairs):
            check(got.shape == want.shape and np.array_equal(got, want), f"converted tensor {i} differs")
        check(text(f.attrs["arch"]) == "tv_resnet18" and abs(f.attrs["bn_epsilon"] - 1e-5) < 1e-12,
              "converter root attributes")


def test_export(export):
    if not os.path.exists(export):
        check(False, f"{export} missing (written by test_weights_h5)")
        return
    layers = keras_read(export)
    with h5py.File(export, "r") as f:
        names = keras_attr_list(f, "layer_names")
        check(f.attrs["layer_names"].dtype.kind == "S", "layer_names is a fixed-length string list")
        check(isinstance(f["input_1" if "input_1" in f else names[0]].attrs["weight_names"], np.ndarray),
              "weightless layers carry weight_names")
        check(text(f.attrs["simtune_format"]) == "export" and text(f.attrs["arch"]) == "resnet50",
              "export root attributes")
    check(len(names) > len(layers) and "conv1_conv" in layers and "embedding" in layers and "predictions" in layers,
          "export lists all layers and includes the new head")
    check(layers["conv1_conv"] == [("conv1_conv/kernel:0", (7, 7, 3, 64)), ("conv1_conv/bias:0", (64,))],
          f"conv1_conv weights as Keras names them: {layers.get('conv1_conv')}")
    check([w for w, _ in layers["conv1_bn"]] == ["conv1_bn/gamma:0", "conv1_bn/beta:0", "conv1_bn/moving_mean:0",
                                                 "conv1_bn/moving_variance:0"], "BN weight order gamma, beta, mean, var")
    check(layers["embedding"][0][1] == (2048, 32), "embedding kernel (2048, 32)")


def write_png(path, width, height, seed):
    """A small RGB PNG (zlib + crc32, no imaging library needed)."""
    import struct
    import zlib
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    raw = b"".join(b"\0" + rows[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_recipe(simtune, fx, export, tmp):
    """The embedding recipe: recorded in simtune files (inspect shows it, embed follows it);
    torchvision conversions have none and embed keeps the defaults (224 px, avg, normalised)."""
    rc, out, err = run(simtune, "inspect", "--json", export)
    recipe = json.loads(out).get("recipe") if rc == 0 else None
    check(recipe == {"image_size": 64, "resize_short": 73, "crop": "center", "pool": "avg", "gem_p": 3,
                     "embed_dim": 32, "normalize": True}, f"inspect --json recipe of the export: {recipe} {err}")
    tv18 = os.path.join(fx, "weights_tv18.h5")
    rc, out, err = run(simtune, "inspect", "--json", tv18)
    check(rc == 0 and json.loads(out)["recipe"] is None, f"a torchvision conversion has no recipe: {out[:200]} {err}")
    images = os.path.join(tmp, "recipe_images")
    os.makedirs(images, exist_ok=True)
    for i in range(3):
        write_png(os.path.join(images, f"{i}.png"), 80, 60, i)
    emb = os.path.join(tmp, "recipe_tv18.h5")
    rc, out, err = run(simtune, "embed", "--weights", tv18, "--images", images, "--out", emb, "--threads", "2")
    check(rc == 0 and "224 px (default)" in out and "pooling avg (default)" in out and "L2-normalised (default)" in out,
          f"embed with a file without a recipe: exit {rc}, {out!r} {err!r}")
    if rc == 0:
        with h5py.File(emb, "r") as f:
            check(f.attrs["image_size"] == 224 and text(f.attrs["pooling"]) == "avg", "tv18 embedding attributes")
    emb = os.path.join(tmp, "recipe_export.h5")
    rc, out, err = run(simtune, "embed", "--weights", export, "--images", images, "--out", emb, "--threads", "2")
    check(rc == 0 and "64 px (weights)" in out and "output embedding D=32" in out,
          f"embed with the export's recipe: exit {rc}, {out!r} {err!r}")


def main():
    if len(sys.argv) not in (3, 4):
        print("usage: test_weights_cli.py FIXTURE_DIR EXPORT [SIMTUNE]", file=sys.stderr)
        return 2
    fx, export = sys.argv[1], sys.argv[2]
    simtune = sys.argv[3] if len(sys.argv) == 4 else os.environ.get("SIMTUNE_BIN", "simtune")
    tmp = os.path.join(fx, "cli_tmp")
    os.makedirs(tmp, exist_ok=True)
    test_inspect(simtune, fx)
    test_converter(fx, tmp)
    test_export(export)
    test_recipe(simtune, fx, export, tmp)
    return testlib.finish("test_weights_cli")


if __name__ == "__main__":
    sys.exit(main())
