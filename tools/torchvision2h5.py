#!/usr/bin/env python3
"""torchvision2h5.py: convert a torchvision ResNet state_dict (.pth) into simtune's HDF5 layout.

The output is the Keras 2 legacy layout that infer/weights_h5.c reads for every family
(resnet-weights-hdf5.md sections 1.1-1.3 and 5.3-5.4):

  root attrs   layer_names (fixed-length NULLPAD strings), backend, keras_version,
               arch = tv_resnet18|34|50|101|152, family = torchvision, block = basic|bottleneck,
               blocks_per_stage (int32 x4), stride_in = 3x3, bn_epsilon = 1e-5,
               preprocess = torch, softmax = 0, simtune_format = torchvision2h5, source = input name
  /<layer>/<layer>/<weight>:0   float32 datasets, conv kernels HWIO (OIHW transposed 2,3,1,0),
               the classifier fc as `predictions` with kernel (C, 1000) (fc.weight transposed)

Names: conv1 -> conv1_conv, bn1 -> conv1_bn, layer{L}.{B}.conv{k} -> conv{L+1}_block{B+1}_{k}_conv,
layer{L}.{B}.bn{k} -> ..._{k}_bn, layer{L}.0.downsample.0/1 -> conv{L+1}_block1_0_conv/_0_bn,
fc -> predictions; num_batches_tracked is dropped.

Usage: torchvision2h5.py INPUT.pth OUTPUT.h5 [--arch resnet50] [--notop]
  INPUT.pth   a state_dict saved with torch.save (or a full model, or {'state_dict': ...})
  --arch      resnet18|resnet34|resnet50|resnet101|resnet152 (default: inferred from the keys)
  --notop     leave out the fc classifier
Exit status: 0 converted, 1 bad input (message names the file and the key), 2 bad usage.
"""
import argparse
import os
import re
import sys

BLOCKS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
BN_WEIGHTS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))


class ConversionError(Exception):
    pass


def load_state_dict(path):
    import torch
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many types for a bad archive
        raise ConversionError(f"{path}: cannot be read by torch.load ({type(e).__name__}: {e})")
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: not a state_dict (expected a dict of tensors)")
    # DataParallel checkpoints prefix every key with "module."
    return {re.sub(r"^module\.", "", k): v for k, v in obj.items()}


def infer_arch(sd, path):
    counts = []
    for layer in range(1, 5):
        blocks = {int(m.group(1)) for k in sd for m in [re.match(rf"layer{layer}\.(\d+)\.", k)] if m}
        counts.append(max(blocks) + 1 if blocks else 0)
    block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    for name, (kind, blocks) in BLOCKS.items():
        if kind == block and tuple(counts) == blocks:
            return name
    raise ConversionError(f"{path}: blocks per layer {counts} ({block}) match no torchvision ResNet "
                          f"({', '.join(BLOCKS)}); HINT: pass --arch")


def layer_plan(arch, top):
    """[(keras layer, kind, torch prefix)] in build order, per section 5.3."""
    block, blocks = BLOCKS[arch]
    convs = 3 if block == "bottleneck" else 2
    plan = [("conv1_conv", "conv", "conv1"), ("conv1_bn", "bn", "bn1")]
    for li, n in enumerate(blocks):
        for b in range(n):
            p, t = f"conv{li + 2}_block{b + 1}", f"layer{li + 1}.{b}"
            if b == 0 and (block == "bottleneck" or li > 0):
                plan += [(p + "_0_conv", "conv", t + ".downsample.0"), (p + "_0_bn", "bn", t + ".downsample.1")]
            for k in range(1, convs + 1):
                plan += [(f"{p}_{k}_conv", "conv", f"{t}.conv{k}"), (f"{p}_{k}_bn", "bn", f"{t}.bn{k}")]
    if top:
        plan.append(("predictions", "dense", "fc"))
    return plan


def take(sd, key, path, used):
    if key not in sd:
        raise ConversionError(f"{path}: key '{key}' is missing; HINT: is this a torchvision ResNet state_dict?")
    used.add(key)
    return sd[key].detach().cpu().float().numpy()


def convert(sd, arch, top, path):
    """{keras layer: [(weight, float32 array in Keras layout)]} in build order."""
    import numpy as np
    used, out = set(), {}
    for layer, kind, prefix in layer_plan(arch, top):
        if kind == "conv":
            w = take(sd, prefix + ".weight", path, used)
            if w.ndim != 4:
                raise ConversionError(f"{path}: '{prefix}.weight' has shape {w.shape}, expected (O, I, kh, kw)")
            out[layer] = [("kernel", np.ascontiguousarray(w.transpose(2, 3, 1, 0)))]
        elif kind == "bn":
            out[layer] = [(kw, take(sd, f"{prefix}.{tk}", path, used)) for tk, kw in BN_WEIGHTS]
        else:
            w = take(sd, "fc.weight", path, used)
            out[layer] = [("kernel", np.ascontiguousarray(w.T)), ("bias", take(sd, "fc.bias", path, used))]
    left = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked")
                  and not (not top and k.startswith("fc.")))
    if left:
        raise ConversionError(f"{path}: {len(left)} unexpected keys for {arch}, e.g. {', '.join(left[:5])}")
    return out


def write(out_path, weights, arch, source):
    import h5py
    import numpy as np
    block, blocks = BLOCKS[arch]
    tmp = out_path + ".tmp"
    with h5py.File(tmp, "w") as f:
        names = list(weights)
        f.attrs["layer_names"] = np.asarray([n.encode() for n in names])  # fixed-length NULLPAD
        f.attrs["backend"] = b"pytorch"
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["arch"] = ("tv_" + arch).encode()
        f.attrs["family"] = b"torchvision"
        f.attrs["block"] = block.encode()
        f.attrs["blocks_per_stage"] = np.asarray(blocks, dtype=np.int32)
        f.attrs["stride_in"] = b"3x3"
        f.attrs["bn_epsilon"] = np.float64(1e-5)
        f.attrs["preprocess"] = b"torch"
        f.attrs["softmax"] = np.int32(0)
        f.attrs["simtune_format"] = b"torchvision2h5"
        f.attrs["source"] = os.path.basename(source).encode()
        for layer, tensors in weights.items():
            g = f.create_group(layer)
            g.attrs["weight_names"] = np.asarray([f"{layer}/{w}:0".encode() for w, _ in tensors])
            for w, value in tensors:
                g.create_dataset(f"{layer}/{w}:0", data=np.asarray(value, dtype=np.float32))
    with open(tmp, "rb") as fh:  # durable before it replaces anything
        os.fsync(fh.fileno())
    os.replace(tmp, out_path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(out_path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="torchvision2h5.py",
        description="Convert a torchvision ResNet state_dict (.pth) into simtune's HDF5 layout "
                    "(Keras legacy layout, HWIO kernels, arch tv_resnetNN).")
    ap.add_argument("input", help="state_dict saved with torch.save")
    ap.add_argument("output", help="HDF5 file to write (atomically, via OUTPUT.tmp)")
    ap.add_argument("--arch", choices=sorted(BLOCKS), help="default: inferred from the keys")
    ap.add_argument("--notop", action="store_true", help="leave out the fc classifier (default: keep it)")
    args = ap.parse_args(argv)
    try:
        import h5py  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"torchvision2h5.py: {e}; HINT: run with /usr/bin/python3 (Debian python3-torch, python3-h5py)",
              file=sys.stderr)
        return 1
    try:
        if not os.path.isfile(args.input):
            raise ConversionError(f"{args.input}: no such file")
        sd = load_state_dict(args.input)
        arch = args.arch or infer_arch(sd, args.input)
        weights = convert(sd, arch, not args.notop, args.input)
        write(args.output, weights, arch, args.input)
    except ConversionError as e:
        print(f"torchvision2h5.py: {e}", file=sys.stderr)
        return 1
    n = sum(v.size for tensors in weights.values() for _, v in tensors)
    print(f"{args.output}: tv_{arch}, {len(weights)} layers, {n} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
