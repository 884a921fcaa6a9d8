"""Minimal safetensors writer/reader for fixture scripts (Debian's torch 1.13 ships no
safetensors module). Same layout as the reference writer: 8-byte LE header length, JSON
header padded with spaces to a multiple of 8, tensors sorted by dtype rank then name.
torch.bfloat16 tensors are written as BF16 (numpy has no bfloat16; load() returns them as
float32); float64 is stored as F32 unless save(..., keep_f64=True)."""
import json
import struct

import numpy as np

_DT = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
       np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
       np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}
_RANK = {"I64": 13, "F64": 12, "F32": 11, "I32": 9, "BF16": 8, "F16": 7, "I16": 5, "I8": 2,
         "U8": 1, "BOOL": 0}
_NP = {v: k for k, v in _DT.items()}


def _np(x):
    """-> (numpy array, dtype name or None). bfloat16 comes back as its raw uint16 bits."""
    try:
        import torch
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().contiguous()
            if x.dtype == torch.bfloat16:
                return _c(x.view(torch.int16).numpy().view(np.uint16)), "BF16"
            x = x.numpy()
    except ImportError:
        pass
    return _c(np.asarray(x)), None


def _c(a):
    # Not np.ascontiguousarray: it turns 0-d arrays (scalars, e.g. num_batches_tracked)
    # into shape (1,).
    return a if a.flags.c_contiguous else a.copy(order="C")


def save(path, tensors, metadata=None, keep_f64=False):
    """tensors: name -> numpy array or torch tensor. float64 is stored as F32 unless
    keep_f64; torch.bfloat16 is stored as BF16."""
    items = []
    for name, x in tensors.items():
        a, dt = _np(x)
        if a.dtype == np.float64 and not keep_f64:
            a = a.astype(np.float32)
        items.append((name, dt or _DT[a.dtype], a))
    items.sort(key=lambda t: (-_RANK[t[1]], t[0]))
    header, at = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, dt, a in items:
        n = a.nbytes
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [at, at + n]}
        at += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, a in items:
            f.write(a.tobytes())


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, v in header.items():
        b, e = v["data_offsets"]
        buf = raw[8 + n + b:8 + n + e]
        if v["dtype"] == "BF16":  # bfloat16 bits are the top half of a float32
            a = (np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(buf, dtype=_NP[v["dtype"]])
        out[name] = a.reshape(v["shape"])
    return out, meta
