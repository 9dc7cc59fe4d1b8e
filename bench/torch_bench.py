#!/usr/bin/python3
"""torch_bench.py: the PyTorch side of `bench/run_model_bench.sh`.

Runs the same work as `simtune bench train|infer` in PyTorch (Debian python3-torch 1.13, CPU,
oneDNN inside) with the same thread count, on random data, and prints one JSON line with
images_per_second and peak_rss_mb, so the two can be compared side by side in one run.

  mode infer:  model.eval(), no grad, forward to pooled features.
  mode train:  model.train() with a 1000-way classifier and cross-entropy, SGD momentum 0.9,
               or with --loss triplet a batch-hard triplet loss on the pooled features (P x K).
  --freeze-until conv4_block6_out freezes conv1, bn1, layer1..layer3 (their BN in eval mode),
               the torchvision equivalent of Keras' conv4_block6_out.
  --bf16       torch.autocast("cpu", torch.bfloat16) around forward and loss (PyTorch's CPU mixed
               precision: bf16 convolutions and matmuls, FP32 weights and optimizer), the peer of
               `simtune bench --precision bf16`.
Keras v1 (resnet50) and torchvision (tv_resnet50) have the same cost; both use torchvision's
resnet50 here (stride placement does not change FLOPs).
"""
import argparse
import json
import resource
import sys
import time

import torch
import torchvision


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["train", "infer"])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--freeze-until", default="none")
    p.add_argument("--loss", choices=["xent", "triplet"], default="xent")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--bf16", action="store_true")
    return p.parse_args()


TV_NAMES = {"resnet50": "resnet50", "tv_resnet50": "resnet50", "resnet101": "resnet101",
            "tv_resnet101": "resnet101", "resnet152": "resnet152", "tv_resnet152": "resnet152",
            "tv_resnet18": "resnet18", "tv_resnet34": "resnet34"}
FROZEN_MODULES = {"none": [], "conv4_block6_out": ["conv1", "bn1", "layer1", "layer2", "layer3"],
                  "conv3_block4_out": ["conv1", "bn1", "layer1", "layer2"]}


def batch_hard(emb, labels, margin=0.2):
    d = torch.cdist(emb, emb)
    same = labels[:, None] == labels[None, :]
    pos = (d * same).max(dim=1).values
    neg = (d + same * 1e9).min(dim=1).values
    return torch.relu(margin + pos - neg).mean()


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    name = TV_NAMES.get(a.arch)
    if name is None:
        sys.exit(f"torch_bench: no torchvision counterpart for arch '{a.arch}'")
    if a.freeze_until not in FROZEN_MODULES:
        sys.exit(f"torch_bench: freeze-until must be one of {sorted(FROZEN_MODULES)}")
    model = getattr(torchvision.models, name)(num_classes=1000)
    if a.loss == "triplet" or a.mode == "infer":
        model.fc = torch.nn.Identity()
    frozen = [getattr(model, m) for m in FROZEN_MODULES[a.freeze_until]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (a.batch,))
    if a.loss == "triplet":
        k = 4
        labels = torch.arange(a.batch) // k
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            if a.mode == "infer":
                with torch.no_grad():
                    model(x)
                return
            model.train()
            for m in frozen:
                m.eval()
            out = model(x)
            loss = batch_hard(out, labels) if a.loss == "triplet" else torch.nn.functional.cross_entropy(out, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if a.mode == "infer":
        model.eval()
    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "mode": a.mode, "arch": a.arch,
                      "image_size": a.image_size, "batch": a.batch, "steps": a.steps, "threads": a.threads,
                      "freeze_until": a.freeze_until, "loss": a.loss, "channels_last": a.channels_last,
                      "precision": "bf16" if a.bf16 else "fp32",
                      "images_per_second": a.batch * a.steps / seconds, "peak_rss_mb": rss_mb}))


if __name__ == "__main__":
    main()
