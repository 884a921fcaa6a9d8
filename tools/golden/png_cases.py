"""Small PNG fixtures that stb_image_write cannot produce, for tests/io/test_image.cpp.

Run: /usr/bin/python3 tools/golden/png_cases.py   (writes tests/fixtures/io/)
- gray16.png: a 16-bit grayscale PNG (must be rejected: only 8-bit is supported).
- rgb48.png: a 16-bit/channel RGB PNG (rejected).
- palette.png: an 8-bit palette PNG (decoded by stb as RGB; accepted as RGB, rejected as gray).
"""
import os
import zlib
import struct

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "io")
os.makedirs(OUT, exist_ok=True)

a = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000).astype(np.uint16)
Image.fromarray(a, mode="I;16").save(os.path.join(OUT, "gray16.png"))


def chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# 16-bit RGB written by hand (Pillow has no 48-bit RGB mode).
w, h = 3, 2
raw = b"".join(b"\x00" + struct.pack(">" + "H" * (3 * w), *range(y * 9, y * 9 + 3 * w)) for y in range(h))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(os.path.join(OUT, "rgb48.png"), "wb").write(png)

p = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], np.uint8), mode="P")
p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (3 * 253))
p.save(os.path.join(OUT, "palette.png"))
print("written to", os.path.abspath(OUT))
