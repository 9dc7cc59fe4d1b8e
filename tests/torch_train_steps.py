#!/usr/bin/env python3
"""torch_train_steps.py: PyTorch 1.13 oracle of the first training steps (tests/test_trainer_steps.c).

A torchvision resnet18 (the Keras-named wrapper of tests/torch_resnet.py) with a new 4-way
classifier `predictions`, random weights with non-trivial BN statistics and damped residual
branches (see torch_resnet.damp_residual_branches: keeps float32 and float64 trajectories
within ~1e-6 of each other), trained for STEPS steps of SGD with momentum on cross-entropy,
all layers trainable, BN in batch-statistics mode with momentum 0.1, weight decay on conv and
dense kernels only (simtune's no_decay_bn_bias), on fixed preprocessed batches. Computed in
float64 so the reference is exact up to float64 rounding and the test measures simtune's own
float32 error.

Writes OUTDIR/trainer_steps.h5:
  Keras 2 layout of the INITIAL weights (layer_names, <layer>/<layer>/<weight>:0, root attr
  arch = tv_resnet18), readable by st_weights_load;
  /steps/x        (STEPS, N, H, W, 3) float32 NHWC batches, already preprocessed
  /steps/labels   (STEPS, N) int32
  /steps/losses   (STEPS) float64: the loss of each step, before that step's update
  /steps attrs    lr, momentum, weight_decay, num_classes, bn_momentum
Usage: torch_train_steps.py [OUTDIR]. Exit 77 when torch/h5py are missing (1 under
SIMTUNE_REQUIRE_ORACLES=1).
"""
import os
import sys

sys.dont_write_bytecode = True  # importing torch_resnet must not write into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402  (after the path line, for a script imported from elsewhere)

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch_resnet as tr
except ImportError as e:
    testlib.missing_oracle("torch_train_steps.py", e)

STEPS, N, H, W, K = 10, 8, 48, 48, 4
LR, MOMENTUM, WEIGHT_DECAY, BN_MOMENTUM = 0.01, 0.9, 0.05, 0.1  # large decay: its grouping shows


class Classifier(nn.Module):
    """Backbone features -> dense `predictions` (K logits)."""

    def __init__(self):
        super().__init__()
        self.backbone = tr.TorchvisionResNet(18)
        self.predictions = self.backbone.p.add("predictions", "dense", nn.Linear(self.backbone.feature_dim, K))

    def forward(self, x):
        return self.predictions(self.backbone(x))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "."
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    gen = torch.Generator().manual_seed(2024)
    model = Classifier()
    params = model.backbone.p
    tr.randomize(params, gen)
    tr.damp_residual_branches(params)
    for _, kind, mod in params.layers:
        if kind == "bn":
            mod.momentum = BN_MOMENTUM
    x = torch.randn(STEPS, N, 3, H, W, generator=gen).float()
    labels = torch.randint(0, K, (STEPS, N), generator=gen)

    path = os.path.join(outdir, "trainer_steps.h5")
    with h5py.File(path + ".tmp", "w") as f:
        tr.write_weights(f, params)  # the initial float32 weights
        f.attrs["arch"] = "tv_resnet18"
        g = f.create_group("steps")
        g.create_dataset("x", data=x.permute(0, 1, 3, 4, 2).contiguous().numpy())
        g.create_dataset("labels", data=labels.int().numpy())
        for key, value in (("lr", LR), ("momentum", MOMENTUM), ("weight_decay", WEIGHT_DECAY),
                           ("num_classes", K), ("bn_momentum", BN_MOMENTUM)):
            g.attrs[key] = value

        model.double()
        model.train()
        kernels = [m.weight for _, kind, m in params.layers if kind in ("conv", "dense")]
        kernel_ids = {id(t) for t in kernels}
        others = [t for t in model.parameters() if id(t) not in kernel_ids and t.requires_grad]
        # the unused torchvision fc gets no gradient, so SGD leaves it alone
        opt = torch.optim.SGD([{"params": kernels, "weight_decay": WEIGHT_DECAY},
                               {"params": others, "weight_decay": 0.0}], lr=LR, momentum=MOMENTUM)
        losses = []
        for s in range(STEPS):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[s].double()), labels[s])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        g.create_dataset("losses", data=np.array(losses, dtype=np.float64))
    os.replace(path + ".tmp", path)
    print(f"wrote {path}: losses " + " ".join(f"{v:.6f}" for v in losses))


if __name__ == "__main__":
    main()
