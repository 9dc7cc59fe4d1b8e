#!/usr/bin/python3
"""data_bench.py: images/s of simtune's data loader vs torchvision, side by side.

Two workloads, both "decode + Resize(R) + CenterCrop(224) + ToTensor/Normalize (torch)", R = 224
by default (--resize; 256 is the other common choice):
  coil100-png   $SHARED/datasets/coil100 as is (128x128 PNG: the upscaling path)
  coil100-jpeg  a JPEG copy of a subset of it upscaled to 640x480, written to a temp dir by
                this script (so JPEG DCT-domain scaling matters)
Ours: `simtune bench data`, its last epoch (the earlier one warms the page cache). torchvision:
ImageFolder + DataLoader(num_workers, same batch size and transforms), one epoch after one
warm-up epoch. Prints both and the ratio.

usage: /usr/bin/python3 bench/data_bench.py [--bin PATH] [--shared DIR] [--threads 2]
                                            [--batch 32] [--resize 224] [--jpeg-every 4] [--keep]
Needs Debian's python3 (torch, torchvision, PIL).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def find_ours(explicit):
    """The command prefix running our data benchmark: [simtune, 'bench', 'data']."""
    simtune = explicit or os.environ.get("SIMTUNE_BIN")
    if not simtune or not os.path.exists(simtune):
        sys.exit("data_bench.py: no simtune binary (HINT: --bin BUILD/simtune or set SIMTUNE_BIN)")
    probe = subprocess.run([simtune, "bench", "data", "--help"], capture_output=True, text=True)
    if probe.returncode != 0 or "--data" not in probe.stdout:
        sys.exit(f"data_bench.py: {simtune} has no working `bench data` command")
    return [simtune, "bench", "data"]


def run_ours(prefix, root, threads, batch, resize):
    cmd = prefix + ["--data", root, "--threads", str(threads), "--batch", str(batch), "--size", "224",
                    "--resize", str(resize), "--preprocess", "torch", "--epochs", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"data_bench.py: {' '.join(cmd)} failed:\n{out.stderr}")
    for line in out.stdout.splitlines():
        if line.startswith("images_per_s="):
            return float(line.split("=", 1)[1]), " ".join(cmd)
    sys.exit(f"data_bench.py: no images_per_s in the output of {' '.join(cmd)}")


def run_torchvision(root, workers, batch, resize):
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    transform = T.Compose([T.Resize(resize), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dataset = ImageFolder(root, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers)
    rate = 0.0
    for _ in range(2):  # the first epoch warms the page cache, like ours
        start = time.perf_counter()
        n = 0
        for x, _labels in loader:
            n += x.shape[0]
        rate = n / (time.perf_counter() - start)
    return rate, len(dataset)


def make_jpeg_copy(src_root, dst_root, every):
    """Every `every`-th image of each class, upscaled to 640x480, as JPEG quality 90."""
    from PIL import Image
    count = 0
    for cls in sorted(os.listdir(src_root)):
        src_dir = os.path.join(src_root, cls)
        if not os.path.isdir(src_dir):
            continue
        os.makedirs(os.path.join(dst_root, cls), exist_ok=True)
        for i, name in enumerate(sorted(os.listdir(src_dir))):
            if i % every:
                continue
            img = Image.open(os.path.join(src_dir, name)).convert("RGB").resize((640, 480), Image.BILINEAR)
            img.save(os.path.join(dst_root, cls, os.path.splitext(name)[0] + ".jpg"), quality=90)
            count += 1
    return count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="the simtune binary (default: $SIMTUNE_BIN)")
    ap.add_argument("--shared", default=os.environ.get("SIMTUNE_SHARED_DIR",
                                                       os.path.join(os.path.dirname(__file__), "..", "..", "shared")))
    ap.add_argument("--threads", type=int, default=2, help="our threads and torchvision's num_workers")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resize", type=int, default=224, help="shorter side before the 224 centre crop")
    ap.add_argument("--jpeg-every", type=int, default=4, help="JPEG copy: every N-th image per class")
    ap.add_argument("--keep", action="store_true", help="keep the temp JPEG dataset")
    args = ap.parse_args()

    coil = os.path.join(args.shared, "datasets", "coil100")
    if not os.path.isdir(coil):
        sys.exit(f"data_bench.py: {coil}: not found (HINT: --shared DIR)")
    ours = find_ours(args.bin)
    tmp = tempfile.mkdtemp(prefix="simtune-data-bench-")
    try:
        jpeg_root = os.path.join(tmp, "coil100-jpeg")
        t0 = time.perf_counter()
        n_jpeg = make_jpeg_copy(coil, jpeg_root, args.jpeg_every)
        print(f"wrote {n_jpeg} JPEGs (640x480) to {jpeg_root} in {time.perf_counter() - t0:.1f} s")
        rows = []
        for name, root in [("coil100-png 128x128", coil), ("coil100-jpeg 640x480", jpeg_root)]:
            ours_rate, cmd = run_ours(ours, root, args.threads, args.batch, args.resize)
            tv_rate, n = run_torchvision(root, args.threads, args.batch, args.resize)
            rows.append((name, n, ours_rate, tv_rate))
            print(f"  ours: {cmd}")
        print(f"\n{'workload':<22} {'images':>7} {'simtune img/s':>14} {'torchvision img/s':>18} {'ratio':>6}")
        for name, n, ours_rate, tv_rate in rows:
            print(f"{name:<22} {n:>7} {ours_rate:>14.1f} {tv_rate:>18.1f} {ours_rate / tv_rate:>5.2f}x")
        print(f"(decode + Resize({args.resize}) + CenterCrop(224) + torch normalisation; {args.threads} threads/workers, "
              f"batch {args.batch}; torchvision = ImageFolder + DataLoader)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
