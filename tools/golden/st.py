"""Minimal safetensors writer/reader for fixture scripts (Debian's torch 1.13 ships no
safetensors module). Same layout as the reference writer: 8-byte LE header length, JSON
header padded with spaces to a multiple of 8, tensors sorted by dtype rank then name."""
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
    try:
        import torch
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(x, order="C")  # (ascontiguousarray would turn 0-d into 1-d)


def save(path, tensors, metadata=None):
    """tensors: name -> numpy array or torch tensor (float64 is stored as F32 unless the
    array's dtype is float64 and keep64 is wanted: convert yourself)."""
    items = []
    for name, x in tensors.items():
        a = _np(x)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        items.append((name, _DT[a.dtype], a))
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
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=_NP[v["dtype"]]).reshape(v["shape"])
    return out, meta
