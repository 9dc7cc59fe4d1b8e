"""make_seeds.py OUT_DIR: small seed corpora for the fuzzers (nothing binary is committed).

OUT_DIR/jpeg: baseline, progressive, greyscale, CMYK, 4:4:4 and 4:2:0, restart markers, EXIF
orientations (both byte orders); OUT_DIR/png: every colour type and bit depth, palette with
tRNS, interlaced, 16-bit; OUT_DIR/manifest: TSV manifests with headers, comments, CRLF.
Needs PIL (Debian's /usr/bin/python3).
"""
import io
import os
import struct
import sys

from PIL import Image


def exif_orientation(value, big_endian):
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, value, 0) + struct.pack(e + "I", 0)
    return b"Exif\x00\x00" + tiff


def main(out):
    for sub in ("jpeg", "png", "manifest"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    rgb = Image.new("RGB", (19, 11))
    rgb.putdata([((x * 13) % 256, (y * 23) % 256, (x * y) % 256) for y in range(11) for x in range(19)])

    def save(img, sub, name, **kw):
        buf = io.BytesIO()
        img.save(buf, **kw)
        with open(os.path.join(out, sub, name), "wb") as f:
            f.write(buf.getvalue())

    save(rgb, "jpeg", "baseline.jpg", format="JPEG", quality=80)
    save(rgb, "jpeg", "progressive.jpg", format="JPEG", quality=80, progressive=True)
    save(rgb, "jpeg", "s444.jpg", format="JPEG", quality=90, subsampling=0)
    save(rgb.convert("L"), "jpeg", "grey.jpg", format="JPEG")
    save(rgb.convert("CMYK"), "jpeg", "cmyk.jpg", format="JPEG")
    save(rgb, "jpeg", "restart.jpg", format="JPEG", quality=70, restart_marker_blocks=1)
    for o in (3, 6, 8):
        save(rgb, "jpeg", f"exif{o}_ii.jpg", format="JPEG", exif=exif_orientation(o, False))
        save(rgb, "jpeg", f"exif{o}_mm.jpg", format="JPEG", exif=exif_orientation(o, True))

    save(rgb, "png", "rgb8.png", format="PNG")
    save(rgb, "png", "rgb8_interlaced.png", format="PNG", interlace=1)
    save(rgb.convert("L"), "png", "grey8.png", format="PNG")
    save(rgb.convert("1"), "png", "grey1.png", format="PNG")
    save(rgb.convert("LA"), "png", "grey_alpha.png", format="PNG")
    save(rgb.convert("RGBA"), "png", "rgba8.png", format="PNG")
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    save(pal, "png", "palette_trns.png", format="PNG", transparency=3)
    save(rgb.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"), "png", "grey16.png", format="PNG")

    manifests = {
        "plain.tsv": "a/1.png\tcat\nb/2.jpg\tdog\n",
        "header.tsv": "path\tlabel\r\n# comment\n\nx.png\t1\n/abs/y.png\t2\r\n",
        "bad.tsv": "a.png\tx\tz\n\tq\n",
    }
    for name, text in manifests.items():
        with open(os.path.join(out, "manifest", name), "w", newline="") as f:
            f.write(text)
    print(f"seed corpora in {out}/{{jpeg,png,manifest}}")


if __name__ == "__main__":
    main(sys.argv[1])
