"""data_torchvision_fixtures.py: torchvision/PIL reference outputs for tests/test_data_transform.c.

Writes into ./data_tv/ (the ctest working directory): source PNGs, the torchvision result of each
case as raw float32 (H, W, 3) and cases.txt, one case per line:

  name src.png op a b c d out_h out_w ref.bin
    op resize_crop  a = resize (shorter side), then CenterCrop(out): torchvision Resize(a, BILINEAR)
    op resize_exact Resize((out_h, out_w), BILINEAR)
    op resized_crop F.resized_crop(img, top=a, left=b, height=c, width=d, size=(out_h, out_w))
    op torch_norm   resize_crop a, then ToTensor + Normalize(ImageNet mean/std): full pipeline
    op decode       the JPEG decoded by PIL (made upright by ImageOps.exif_transpose; a = the
                    EXIF orientation written), incl. greyscale and CMYK JPEGs
  refs of the resize ops are the PIL uint8 result as float 0..255; torch_norm is the normalised
  tensor transposed to HWC.

Exit 77 when torch/torchvision/PIL are missing, unless SIMTUNE_REQUIRE_ORACLES=1.
"""
import os
import sys

import testlib


def main():
    try:
        import numpy as np
        import torch  # noqa: F401  (torchvision needs it; imported to fail early)
        from PIL import Image
        import torchvision.transforms as T
        import torchvision.transforms.functional as F
    except ImportError as e:
        testlib.missing_oracle("data_torchvision_fixtures.py", f"oracle missing ({e})")

    out_dir = "data_tv"
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(1234)

    def source(name, w, h):
        """Noise over gradients: every pixel differs, so any offset or filter error shows."""
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255.0 / max(w - 1, 1), yy * 255.0 / max(h - 1, 1),
                         127 + 100 * np.sin((xx + yy) * 0.2)], axis=-1)
        px = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
        path = os.path.join(out_dir, name)
        Image.fromarray(px, "RGB").save(path)
        return path

    bilinear = T.InterpolationMode.BILINEAR
    cases = []

    def add(name, src, op, params, out_hw, result):
        ref = os.path.join(out_dir, name + ".bin")
        np.ascontiguousarray(result, dtype=np.float32).tofile(ref)
        cases.append(" ".join([name, src, op] + [str(p) for p in params] + [str(out_hw[0]), str(out_hw[1]), ref]))

    def pil_to_float(img):
        return np.asarray(img, dtype=np.float32)

    for name, w, h, resize, crop in [("down_640x480", 640, 480, 256, 224),
                                     ("up_128x128", 128, 128, 256, 224),
                                     ("odd_333x217", 333, 217, 224, 224),
                                     ("tall_61x97", 61, 97, 240, 200),
                                     ("big_1000x750", 1000, 750, 256, 224)]:
        src = source(name + ".png", w, h)
        img = Image.open(src).convert("RGB")
        res = T.CenterCrop(crop)(T.Resize(resize, interpolation=bilinear)(img))
        add(name, src, "resize_crop", [resize, 0, 0, 0], (crop, crop), pil_to_float(res))

    src = source("exact_640x480.png", 640, 480)
    img = Image.open(src).convert("RGB")
    add("exact_640x480", src, "resize_exact", [0, 0, 0, 0], (224, 160),
        pil_to_float(T.Resize((224, 160), interpolation=bilinear)(img)))

    src = source("crop_300x200.png", 300, 200)
    img = Image.open(src).convert("RGB")
    for name, top, left, ch, cw in [("rcrop_down", 17, 31, 150, 120), ("rcrop_up", 50, 200, 40, 90)]:
        res = F.resized_crop(img, top, left, ch, cw, [224, 224], interpolation=bilinear)
        add(name, src, "resized_crop", [top, left, ch, cw], (224, 224), pil_to_float(res))

    src = source("norm_500x375.png", 500, 375)
    img = Image.open(src).convert("RGB")
    pipeline = T.Compose([T.Resize(256, interpolation=bilinear), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    add("torch_norm", src, "torch_norm", [256, 0, 0, 0], (224, 224), pipeline(img).permute(1, 2, 0).numpy())

    # EXIF orientations through PIL's encoder, upright per ImageOps.exif_transpose
    from PIL import ImageOps
    src_img = Image.open(source("exif_src.png", 37, 23)).convert("RGB")
    for o in range(1, 9):
        path = os.path.join(out_dir, f"exif{o}.jpg")
        exif = Image.Exif()
        exif[0x0112] = o
        src_img.save(path, quality=95, exif=exif.tobytes())
        upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), dtype=np.float32)
        add(f"exif{o}", path, "decode", [o, 0, 0, 0], upright.shape[:2], upright)

    # greyscale and (Adobe, inverted) CMYK JPEGs: PIL's conversion to RGB
    for mode in ("L", "CMYK"):
        path = os.path.join(out_dir, f"mode_{mode}.jpg")
        src_img.convert(mode).save(path, quality=95)
        ref = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        add(f"jpeg_{mode}", path, "decode", [1, 0, 0, 0], ref.shape[:2], ref)

    with open(os.path.join(out_dir, "cases.txt"), "w") as f:
        f.write("\n".join(cases) + "\n")
    print(f"wrote {len(cases)} torchvision cases to {out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
