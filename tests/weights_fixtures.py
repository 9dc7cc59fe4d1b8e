#!/usr/bin/env python3
"""weights_fixtures.py OUTDIR: every file the weight-loader tests read, written independently of
simtune's C writer (tests/keras_h5.py for the Keras layouts, tools/torchvision2h5.py for the
torchvision conversion), plus PyTorch reference features.

Same-seed variants hold identical numbers in different layouts, so the C test can require that
each loads to exactly the values of weights_r50.h5:
  weights_r50.h5                 ResNet50 notop, h5py-2 style fixed-length NULLPAD lists
  weights_r50_vlen_sorted.h5     variable-length lists (h5py 3), groups created sorted by name,
                                 extra top_level_model_weights group (tf-keras)
  weights_r50_full_chunked.h5    model.save layout (/model_weights), layer_names split into
                                 layer_names0.. (chunk limit 1024 bytes), TF1 scopes conv1_conv_1/
  weights_r50_top_probs.h5       with the classifier, named `probs` as in the 2018 files
  weights_r50_k3.weights.h5      Keras 3 layout with vars names
  weights_r50_positional.h5      unfamiliar variable names (param_0, param_1 ...): Keras order
Other architectures and bad input:
  weights_r50v2.h5               ResNet50V2 notop (another architecture)
  weights_k3_nonames.weights.h5  Keras 3 layout without names (Keras < 3.6)
  weights_wrong_shape.h5         conv2_block1_2_conv kernel (3,3,64,32)
  weights_missing_layers.h5      conv3_block2_1_conv and conv4_block1_0_bn left out
  weights_skeleton_resnet101.h5, weights_skeleton_resnet152v2.h5
                                 the full layer sets with every tensor of shape (1,): depth
                                 detection without writing 170-230 MB
  weights_truncated.h5           the first half of weights_tv18.h5 (the smallest file)
  weights_corrupt_meta.h5        weights_tv18.h5 with bytes of its metadata overwritten
  weights_corrupt_data.h5        weights_tv18.h5 with 0xFF bytes (NaNs) inside a dataset
  weights_empty.h5 (0 bytes), weights_text.h5 (not HDF5)
Torchvision:
  weights_tv18.pth / weights_tv18.h5   random torchvision resnet18, converted
References (NHWC input (2, 64, 64, 3), pooled features in inference mode):
  weights_ref_resnet50.h5        tests/torch_resnet.py KerasResNet with weights_r50.h5's numbers
  weights_ref_tv_resnet18.h5     torchvision resnet18 with weights_tv18.pth's state_dict
Exit 77 without torch/h5py (1 when SIMTUNE_REQUIRE_ORACLES=1).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import testlib  # noqa: E402  (after the path line, for a script imported from elsewhere)

try:
    import h5py
    import numpy as np
    import torch
    import torchvision
    import keras_h5
    import torch_resnet
except ImportError as e:
    testlib.missing_oracle("weights_fixtures.py", e)

SEED = 1
N, H, W = 2, 64, 64


def write_legacy(path, layers, values, **kw):
    opts = dict(fixed=True, limit=keras_h5.HDF5_OBJECT_HEADER_LIMIT, suffix="", sorted_groups=False,
                top_level=False, label=None)
    opts.update(kw)
    with h5py.File(path, "w") as f:
        keras_h5.write_legacy(f, layers, values, opts["fixed"], opts["limit"], opts["suffix"],
                              opts["sorted_groups"], opts["top_level"], opts["label"])


def keras_files(out):
    layers = keras_h5.resnet_layers("resnet50", top=False)
    values = keras_h5.random_weights(layers, SEED)
    write_legacy(f"{out}/weights_r50.h5", layers, values)
    write_legacy(f"{out}/weights_r50_vlen_sorted.h5", layers, values, fixed=False, sorted_groups=True,
                 top_level=True)
    write_legacy(f"{out}/weights_r50_positional.h5", layers, values, label=lambda w, k: f"param_{k}")
    with h5py.File(f"{out}/weights_r50_full_chunked.h5", "w") as f:
        f.attrs["model_config"] = b'{"class_name": "Model"}'
        keras_h5.write_legacy(f.create_group("model_weights"), layers, values, True, 1024, "_1", False, False)
    with h5py.File(f"{out}/weights_r50_k3.weights.h5", "w") as f:
        keras_h5.write_keras3(f, layers, values, names=True)
    with h5py.File(f"{out}/weights_k3_nonames.weights.h5", "w") as f:
        keras_h5.write_keras3(f, layers, values, names=False)

    top = keras_h5.resnet_layers("resnet50", top=True)
    top_values = keras_h5.random_weights(top, SEED)
    name, cls, weights = top[-1]
    top[-1] = ("probs", cls, weights)
    top_values.update({("probs", w): top_values[(name, w)] for w, _ in weights})
    write_legacy(f"{out}/weights_r50_top_probs.h5", top, top_values, fixed=False)

    v2 = keras_h5.resnet_layers("resnet50v2", top=False)
    write_legacy(f"{out}/weights_r50v2.h5", v2, keras_h5.random_weights(v2, SEED + 1))

    wrong = [(n, c, [(w, (3, 3, 64, 32) if (n, w) == ("conv2_block1_2_conv", "kernel") else s) for w, s in ws])
             for n, c, ws in layers]
    write_legacy(f"{out}/weights_wrong_shape.h5", wrong, keras_h5.random_weights(wrong, SEED))
    missing = [l for l in layers if l[0] not in ("conv3_block2_1_conv", "conv4_block1_0_bn")]
    write_legacy(f"{out}/weights_missing_layers.h5", missing, values)
    for arch in ("resnet101", "resnet152v2"):  # names only: every tensor shrunk to (1,)
        skeleton = [(n, c, [(w, (1,)) for w, _s in ws]) for n, c, ws in keras_h5.resnet_layers(arch, top=True)]
        write_legacy(f"{out}/weights_skeleton_{arch}.h5", skeleton, keras_h5.random_weights(skeleton, SEED))
    return layers, values


def bad_files(out):
    src = f"{out}/weights_tv18.h5"
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        data = bytearray(f.read())
    with open(f"{out}/weights_truncated.h5", "wb") as f:
        f.write(data[: size // 2])
    meta = bytearray(data)
    meta[800:1800] = b"\x5a" * 1000  # root group object header / heap region of an h5py file
    with open(f"{out}/weights_corrupt_meta.h5", "wb") as f:
        f.write(meta)
    raw = bytearray(data)
    raw[size // 2: size // 2 + 4096] = b"\xff" * 4096  # inside some kernel: NaN floats
    with open(f"{out}/weights_corrupt_data.h5", "wb") as f:
        f.write(raw)
    open(f"{out}/weights_empty.h5", "wb").close()
    with open(f"{out}/weights_text.h5", "w") as f:
        f.write("this is a text file, not HDF5\n")


def keras_to_torch(kind, weight, value):
    if kind == "conv" and weight == "kernel":
        return torch.from_numpy(np.ascontiguousarray(value.transpose(3, 2, 0, 1)))
    return torch.from_numpy(value)


def reference_resnet50(out, values, x):
    net = torch_resnet.KerasResNet(v2=False)
    with torch.no_grad():
        for name, kind, mod in net.p.layers:
            for wname, tensor, _to_keras in net.p.keras_weights(mod, kind):
                tensor.copy_(keras_to_torch(kind, wname, values[(name, wname)]))
    net.eval()
    with torch.no_grad():
        feats = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    with h5py.File(f"{out}/weights_ref_resnet50.h5", "w") as f:
        f.create_dataset("input", data=x)
        f.create_dataset("features", data=feats)


def torchvision_files(out, x):
    gen = torch.Generator().manual_seed(SEED)
    net = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # non-trivial BN statistics so a mapping mistake shows in the features
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    torch.save(net.state_dict(), f"{out}/weights_tv18.pth")
    subprocess.run([sys.executable, os.path.join(HERE, "..", "tools", "torchvision2h5.py"),
                    f"{out}/weights_tv18.pth", f"{out}/weights_tv18.h5"], check=True)
    net.eval()
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        n = net
        y = n.layer4(n.layer3(n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(t))))))))
        feats = torch.flatten(n.avgpool(y), 1).numpy()
    with h5py.File(f"{out}/weights_ref_tv_resnet18.h5", "w") as f:
        f.create_dataset("input", data=x)
        f.create_dataset("features", data=feats)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    stale = f"{out}/weights_export_test.h5"  # written by test_weights_h5, read by test_weights_cli.py
    if os.path.exists(stale):
        os.remove(stale)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    _layers, values = keras_files(out)
    x = np.random.default_rng(SEED).standard_normal((N, H, W, 3)).astype(np.float32)
    reference_resnet50(out, values, x)
    torchvision_files(out, x)
    bad_files(out)
    print(f"weights fixtures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
