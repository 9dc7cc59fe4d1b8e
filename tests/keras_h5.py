#!/usr/bin/env python3
"""keras_h5.py: an independent writer of Keras-layout ResNet weight files, for loader tests.

Writes files with h5py the way Keras' own writers do (resnet-weights-hdf5.md sections 1.1, 1.2,
1.4, 1.6), never through simtune's C writer, so the C loader is tested against the format rather
than against itself:

  legacy (default)  model.save_weights('x.h5'): root attrs layer_names / backend / keras_version,
                    one group per layer (weightless ones too) with weight_names, datasets
                    <layer>/<weight name>; --strings fixed = numpy S arrays (h5py 2: fixed-length
                    NULLPAD), vlen = lists of bytes (h5py 3: variable-length); weightless layers
                    get np.asarray([]) (float64, dims (0)); lists over --attr-limit bytes are
                    split into name0, name1, ... with np.array_split as Keras does.
  --full-model      model.save('x.h5'): model_config/training_config at the root, weights under
                    /model_weights.
  --keras3 / --keras3-no-names
                    Keras 3 x.weights.h5: /vars, /layers/<snake_class>[_N]/vars/<i>, with (3.6+)
                    or without the vars attribute `name`.

Weights are random (seeded) but shaped exactly like keras.applications; they are scaled so that
a forward pass stays finite (He-like kernels, BN variance near 1).

Usage: keras_h5.py OUT.h5 [--arch resnet50] [--top] [--classifier-name predictions|probs]
       [--strings fixed|vlen] [--full-model] [--keras3 | --keras3-no-names] [--seed N]
       [--scope-suffix _1] [--attr-limit 64512] [--sorted-groups] [--top-level-group]
Also importable: resnet_layers(arch, top) -> [(name, snake_class, [(weight, shape)])],
random_weights(layers, seed) -> {(layer, weight): float32 array}.
"""
import argparse
import json
import sys

import numpy as np

import testlib

try:
    import h5py
except ImportError:
    testlib.missing_oracle("keras_h5.py", f"h5py is not installed for {sys.executable}")

HDF5_OBJECT_HEADER_LIMIT = 64512  # Keras' constant

BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


def conv(name, r, cin, cout, bias=True):
    weights = [("kernel", (r, r, cin, cout))] + ([("bias", (cout,))] if bias else [])
    return (name, "conv2d", weights)


def bn(name, c):
    return (name, "batch_normalization",
            [(w, (c,)) for w in ("gamma", "beta", "moving_mean", "moving_variance")])


def plain(name, cls):
    return (name, cls, [])


def resnet_layers(arch, top):
    """model.layers of keras.applications ResNet{50,101,152}[V2] (doc sections 2.1-2.3)."""
    v2 = arch.endswith("v2")
    blocks = BLOCKS[arch[:-2] if v2 else arch]
    layers = [plain("input_1", "input_layer"), plain("conv1_pad", "zero_padding2d"),
              conv("conv1_conv", 7, 3, 64)]
    if not v2:
        layers += [bn("conv1_bn", 64), plain("conv1_relu", "activation")]
    layers += [plain("pool1_pad", "zero_padding2d"), plain("pool1_pool", "max_pooling2d")]
    cin, pools = 64, 0
    for s, n in enumerate(blocks):
        f = 64 << s
        for b in range(1, n + 1):
            p = "conv%d_block%d" % (s + 2, b)
            if not v2:
                if b == 1:
                    layers += [conv(p + "_0_conv", 1, cin, 4 * f), bn(p + "_0_bn", 4 * f)]
                layers += [conv(p + "_1_conv", 1, cin, f), bn(p + "_1_bn", f),
                           plain(p + "_1_relu", "activation"),
                           conv(p + "_2_conv", 3, f, f), bn(p + "_2_bn", f),
                           plain(p + "_2_relu", "activation"),
                           conv(p + "_3_conv", 1, f, 4 * f), bn(p + "_3_bn", 4 * f),
                           plain(p + "_add", "add"), plain(p + "_out", "activation")]
            else:
                layers += [bn(p + "_preact_bn", cin), plain(p + "_preact_relu", "activation")]
                if b == 1:
                    layers.append(conv(p + "_0_conv", 1, cin, 4 * f))
                elif b == n and s < 3:  # strided last block: unnamed 1x1 max-pool shortcut
                    pools += 1
                    layers.append(plain("max_pooling2d" + ("_%d" % (pools - 1) if pools > 1 else ""),
                                        "max_pooling2d"))
                layers += [conv(p + "_1_conv", 1, cin, f, bias=False), bn(p + "_1_bn", f),
                           plain(p + "_1_relu", "activation"), plain(p + "_2_pad", "zero_padding2d"),
                           conv(p + "_2_conv", 3, f, f, bias=False), bn(p + "_2_bn", f),
                           plain(p + "_2_relu", "activation"),
                           conv(p + "_3_conv", 1, f, 4 * f), plain(p + "_out", "add")]
            cin = 4 * f
    if v2:
        layers += [bn("post_bn", cin), plain("post_relu", "activation")]
    if top:
        layers += [plain("avg_pool", "global_average_pooling2d"),
                   ("predictions", "dense", [("kernel", (cin, 1000)), ("bias", (1000,))])]
    return layers


def random_weights(layers, seed):
    """Seeded float32 weights with forward-stable scales, keyed (layer, weight)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, _cls, weights in layers:
        for w, shape in weights:
            if w == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                v = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(1.0 / fan_in))
            elif w == "gamma":
                v = rng.uniform(0.5, 1.0, shape).astype(np.float32)
            elif w == "moving_variance":
                v = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            else:  # bias, beta, moving_mean
                v = (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.05))
            out[(name, w)] = v
    return out


def save_attributes(group, name, data, fixed, limit):
    """Keras save_attributes_to_hdf5_group, with h5py-2 (fixed) or h5py-3 (vlen) string typing."""
    data_npy = np.asarray(data)
    num_chunks = 1
    chunked = np.array_split(data_npy, num_chunks)
    while any(x.nbytes > limit for x in chunked):
        num_chunks += 1
        chunked = np.array_split(data_npy, num_chunks)
    if num_chunks > 1:
        for chunk_id, chunk in enumerate(chunked):
            group.attrs["%s%d" % (name, chunk_id)] = chunk
    else:
        # h5py 2 converted the list with np.asarray (S dtype, fixed NULLPAD); h5py 3 keeps the
        # bytes items and writes variable-length strings; [] is float64 dims (0) in both.
        group.attrs[name] = data_npy if fixed else data


def write_legacy(g, layers, values, fixed, limit, suffix, sorted_groups, top_level, label=None):
    """label(weight, index) -> the variable's short name (default: the weight itself)."""
    save_attributes(g, "layer_names", [n.encode("utf8") for n, _c, _w in layers], fixed, limit)
    g.attrs["backend"] = b"tensorflow"
    g.attrs["keras_version"] = b"2.2.4"
    order = sorted(layers, key=lambda l: l[0]) if sorted_groups else layers
    for name, _cls, weights in order:
        lg = g.create_group(name)
        names = [("%s%s/%s:0" % (name, suffix, label(w, k) if label else w)).encode("utf8")
                 for k, (w, _s) in enumerate(weights)]
        save_attributes(lg, "weight_names", names, fixed, limit)
        for wn, (w, shape) in zip(names, weights):
            val = values[(name, w)]
            assert val.shape == shape
            d = lg.create_dataset(wn.decode(), val.shape, dtype=val.dtype)
            d[:] = val
    if top_level:  # tf-keras / Keras 3 legacy writers; not listed in layer_names
        save_attributes(g.create_group("top_level_model_weights"), "weight_names", [], fixed, limit)


def write_keras3(f, layers, values, names):
    root_vars = f.create_group("vars")
    if names:
        root_vars.attrs["name"] = "resnet"
    counters = {}
    for name, cls, weights in layers:
        k = counters.get(cls, 0)
        counters[cls] = k + 1
        vars_group = f.create_group("layers/%s%s" % (cls, "_%d" % k if k else "")).create_group("vars")
        if names:
            vars_group.attrs["name"] = name
        for i, (w, _shape) in enumerate(weights):
            vars_group.create_dataset(str(i), data=values[(name, w)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--arch", default="resnet50", choices=sorted(BLOCKS) + [a + "v2" for a in sorted(BLOCKS)])
    ap.add_argument("--top", action="store_true", help="include avg_pool + the 1000-class classifier")
    ap.add_argument("--classifier-name", default="predictions", help="predictions (Keras) or probs (2018 files)")
    ap.add_argument("--strings", default="fixed", choices=["fixed", "vlen"])
    ap.add_argument("--full-model", action="store_true")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--keras3", action="store_true")
    group.add_argument("--keras3-no-names", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scope-suffix", default="", help="e.g. _1: TF1 uniquified variable scopes")
    ap.add_argument("--attr-limit", type=int, default=HDF5_OBJECT_HEADER_LIMIT,
                    help="chunking threshold in bytes (smaller values force layer_names0..)")
    ap.add_argument("--sorted-groups", action="store_true", help="create groups sorted by name (tf-keras)")
    ap.add_argument("--top-level-group", action="store_true", help="add top_level_model_weights")
    args = ap.parse_args()

    layers = resnet_layers(args.arch, args.top)
    if args.top and args.classifier_name != "predictions":
        name, cls, weights = layers[-1]
        layers[-1] = (args.classifier_name, cls, weights)
    values = random_weights(layers, args.seed)
    with h5py.File(args.out, "w") as f:
        if args.keras3 or args.keras3_no_names:
            write_keras3(f, layers, values, names=args.keras3)
        elif args.full_model:
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"name": args.arch}}).encode()
            f.attrs["training_config"] = json.dumps({"loss": "categorical_crossentropy"}).encode()
            write_legacy(f.create_group("model_weights"), layers, values, args.strings == "fixed",
                         args.attr_limit, args.scope_suffix, args.sorted_groups, args.top_level_group)
        else:
            write_legacy(f, layers, values, args.strings == "fixed", args.attr_limit,
                         args.scope_suffix, args.sorted_groups, args.top_level_group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
