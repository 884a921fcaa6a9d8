"""Writes the seed corpus of the safetensors fuzz target (tests/fuzz/corpus/): small valid
files, one per dtype, plus metadata, empty tensors, an empty file and an unaligned header.
Standard library only; run once: python3 tests/fuzz/make_corpus.py."""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
        "U8": 1, "BOOL": 1}
RANK = {"I64": 13, "F64": 12, "F32": 11, "I32": 9, "BF16": 8, "F16": 7, "I16": 5, "I8": 2,
        "U8": 1, "BOOL": 0}


def pack(tensors, metadata=None, align=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    items = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0]))
    header, at = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in items:
        n = 1
        for d in shape:
            n *= d
        assert len(raw) == n * SIZE[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + len(raw)]}
        at += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if align:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in items)


def put(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


os.makedirs(OUT, exist_ok=True)
vals = [0.0, 1.0, -2.5, 3.25, 65504.0, -0.0]
put("f32.safetensors", pack([("w", "F32", [2, 3], struct.pack("<6f", *vals))]))
put("f16.safetensors", pack([("h", "F16", [6], struct.pack("<6e", *vals))]))
bf = b"".join(struct.pack("<f", v)[2:] for v in vals)  # bfloat16 = top half of f32
put("bf16.safetensors", pack([("b", "BF16", [3, 2], bf)]))
put("f64.safetensors", pack([("d", "F64", [2, 3], struct.pack("<6d", 1e300, -1e-300, *vals[:4]))]))
put("i64.safetensors", pack([("n", "I64", [], struct.pack("<q", -(2**62)))]))
put("i32.safetensors", pack([("i", "I32", [2], struct.pack("<2i", -7, 2**31 - 1))]))
put("i16.safetensors", pack([("s", "I16", [2], struct.pack("<2h", -300, 300))]))
put("i8.safetensors", pack([("c", "I8", [3], struct.pack("<3b", -128, 0, 127))]))
put("u8.safetensors", pack([("u", "U8", [3], bytes([0, 128, 255]))]))
put("bool.safetensors", pack([("m", "BOOL", [4], bytes([0, 1, 1, 0]))]))
put("mixed_meta.safetensors", pack(
    [("a.weight", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
     ("a.bias", "F16", [2], struct.pack("<2e", 0.5, -0.5)),
     ("bn.num_batches_tracked", "I64", [], struct.pack("<q", 7))],
    metadata={"format": "pt", "note": "caf\u00e9 \u2603"}))
put("empty_tensor.safetensors", pack([("z", "F32", [0, 3], b""), ("one", "U8", [1], b"\x05")]))
put("empty_file.safetensors", pack([]))
put("meta_only.safetensors", pack([], metadata={"k": "v"}))
put("unaligned.safetensors", pack([("x", "F32", [3], struct.pack("<3f", 1, 2, 3))], align=False))
