"""Golden fixtures for io/transforms (SPEC 3) made with Debian's Pillow 9.4 and torch.

Run: /usr/bin/python3 tools/golden/transforms.py   (writes tests/fixtures/transforms/)

- 8-bit resize cases: input PNG, Pillow output PNG, listed in cases.json. Small random
  images (every pixel value, odd sizes, up- and down-scaling) plus a few realistic sizes
  (900x400, 600x800, 800x800, 400x900, upscaling 100x60) stored as smooth images with sharp
  edges so the PNGs stay small. "pad_*" ops first pad to a square with edge replication
  (left/top floor of half), as the reference loader does.
- nearest.safetensors: torch.nn.functional.interpolate(mode='nearest') source indices for
  several (in, out) sizes (SPEC 3.2), and a ToTensor+Normalize case (SPEC 3.1).
"""
import json
import os
import sys

import numpy as np
from PIL import Image
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "transforms")
rng = np.random.default_rng(1234)


def pad_edge(a):
    h, w = a.shape[:2]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    pads = [(top, s - h - top), (left, s - w - left)] + ([(0, 0)] if a.ndim == 3 else [])
    return np.pad(a, pads, mode="edge")


def smooth_image(w, h, channels):
    """Gradients, sinusoids, hard-edged rectangles and a few isolated spikes: exercises
    ringing and clipping while compressing well as PNG."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(channels):
        v = 128 + 90 * np.sin(x / (17 + 5 * c)) * np.cos(y / (23 + 3 * c)) + 0.1 * (x - y)
        v = np.round(v / 8) * 8  # banded: keeps the PNG small, adds many edges
        chans.append(v)
    a = np.stack(chans, -1)
    for _ in range(12):
        x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
        a[y0:y0 + rng.integers(3, 80), x0:x0 + rng.integers(3, 80)] = rng.integers(0, 256, channels)
    for _ in range(40):
        a[rng.integers(0, h), rng.integers(0, w)] = rng.choice([0, 255])
    a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return a if channels > 1 else a[..., 0]


def mask_image(w, h):
    a = np.zeros((h, w), np.uint8)
    for _ in range(6):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(2, max(3, min(w, h) // 4))
        yy, xx = np.ogrid[0:h, 0:w]
        a[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 255
    a[rng.random((h, w)) < 0.01] = 255  # isolated pixels: nearest must pick exactly
    a[rng.random((h, w)) < 0.01] = 100  # a value under the binarisation threshold
    return a


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def normalize(img_u8):
    """SPEC 3.1 ToTensor + Normalize (torchvision semantics written out in torch):
    uint8 H×W×3 -> 3×H×W float32."""
    t = torch.from_numpy(np.array(img_u8, copy=True)).permute(2, 0, 1).float().div(255)
    return (t - MEAN) / STD


def rgb_transform(img_u8, side):
    """SPEC 3.1: pad to square (edge), Pillow BICUBIC to side×side, normalise -> 3×S×S."""
    res = np.asarray(Image.fromarray(pad_edge(img_u8)).resize((side, side), Image.BICUBIC))
    return normalize(res)


def cloud_transform(cloud_hw3, side):
    """SPEC 3.2: H×W×3 float32 -> 3×S×S by torch interpolate(mode='nearest')."""
    c = torch.from_numpy(np.ascontiguousarray(cloud_hw3, dtype=np.float32)).permute(2, 0, 1)
    return torch.nn.functional.interpolate(c[None], size=(side, side), mode="nearest")[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []


    def add(name, arr, op, out_w, out_h):
        in_file = f"{name}_in.png"
        Image.fromarray(arr).save(os.path.join(OUT, in_file), optimize=True)
        src = pad_edge(arr) if op.startswith("pad_") else arr
        im = Image.fromarray(src)
        resample = Image.BICUBIC if op.endswith("bicubic") else Image.NEAREST
        res = np.asarray(im.resize((out_w, out_h), resample))
        exp_file = f"{name}_{op}_{out_w}x{out_h}.png"
        Image.fromarray(res).save(os.path.join(OUT, exp_file), optimize=True)
        cases.append({"input": in_file, "op": op, "out_w": out_w, "out_h": out_h, "expected": exp_file})


    # Small random images: every code path, values at 0/255 (clipping).
    for (w, h, ow, oh) in [(13, 7, 5, 9), (7, 13, 20, 20), (31, 17, 8, 8), (16, 16, 16, 5),
                           (9, 9, 224, 224), (50, 3, 17, 1), (1, 1, 4, 3), (40, 40, 39, 41)]:
        name = f"rand_{w}x{h}"
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        add(name, a, "bicubic", ow, oh)
        add(name + "_g", a[..., 0].copy(), "bicubic", ow, oh)
        add(name + "_g", a[..., 0].copy(), "nearest", ow, oh)
    add("rand_25x11", rng.integers(0, 256, (11, 25, 3), dtype=np.uint8), "pad_bicubic", 12, 12)

    # Realistic sizes (MVTec 3D-AD rgb is 800x800 and smaller/larger non-square crops).
    for (w, h) in [(900, 400), (600, 800), (800, 800), (400, 900), (100, 60)]:
        name = f"real_{w}x{h}"
        a = smooth_image(w, h, 3)
        add(name, a, "pad_bicubic", 224, 224)
        add(name, a, "bicubic", 224, 224)
        if (w, h) == (100, 60):
            add(name, a, "bicubic", 333, 250)  # upscaling, non-square
        m = mask_image(w, h)
        add(name + "_gt", m, "pad_nearest", 224, 224)
        add(name + "_gt", m, "nearest", 224, 224)

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generator": "tools/golden/transforms.py", "pillow": Image.__version__,
                   "cases": cases}, f, indent=1)

    # SPEC 3.2: torch nearest source indices (interpolate an arange along each axis).
    tensors = {}
    pairs = [(800, 224), (224, 224), (112, 224), (900, 224), (600, 224), (1000, 224), (7, 224),
             (300, 224), (224, 800), (400, 1000), (625, 224), (2000, 224)]
    for (i, o) in pairs:
        x = torch.arange(i, dtype=torch.float32).view(1, 1, 1, i)
        idx = torch.nn.functional.interpolate(x, size=(1, o), mode="nearest").view(-1)
        tensors[f"nearest_{i}_{o}"] = idx.to(torch.int64)
    # SPEC 3.1 ToTensor + Normalize (torchvision semantics written out in torch).
    img = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1).float().div(255)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    tensors["norm_in"] = torch.from_numpy(img)
    tensors["norm_out"] = (t - mean) / std
    st.save(os.path.join(OUT, "nearest_norm.safetensors"), tensors)
    print(len(cases), "cases written to", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
