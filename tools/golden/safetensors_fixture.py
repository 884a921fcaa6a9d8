"""Fixture for tests/io/test_safetensors.cpp: tests/fixtures/io/st_python.safetensors,
written by tools/golden/st.py (the Python side of our fixtures) from torch tensors of every
dtype. Each tensor `x` comes with `x.as_f32`, torch's own conversion `x.float()`, so the C++
reader's F16/BF16/F64/integer -> F32 conversion is checked against torch bit for bit.
Also writes st_python.safetensors.sha256 (hashlib's digest of the file).
Run with Debian's torch: /usr/bin/python3 tools/golden/safetensors_fixture.py"""
import hashlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "io", "st_python.safetensors")

g = torch.Generator().manual_seed(1234)
inf, nan = float("inf"), float("nan")
flt_max = torch.finfo(torch.float32).max
t = {}
t["f32"] = torch.randn(3, 4, generator=g)
t["f32_scalar"] = torch.tensor(2.5)
t["f32_empty"] = torch.zeros(0, 2)
t["f16"] = torch.cat([torch.randn(6, generator=g) * 1000,
                      torch.tensor([6e-8, -6.1e-5, inf, -inf, 65504.0, -0.0, nan])]).half()
t["bf16"] = torch.cat([torch.randn(5, generator=g),
                       torch.tensor([1e38, -3e-39, inf, nan, -0.0])]).bfloat16().reshape(2, 5)
t["f64"] = torch.cat([torch.randn(4, generator=g, dtype=torch.float64),
                      torch.tensor([1e300, -1e300, 1e-300, -1e-50, 1.0 / 3.0, flt_max,
                                    flt_max + 2.0**102, flt_max + 2.0**103, -(flt_max + 2.0**104),
                                    inf, nan], dtype=torch.float64)])
t["i64"] = torch.tensor([[-(2**62) - 1, 2**53 + 1, 7], [0, -1, 2**63 - 1]], dtype=torch.int64)
t["i32"] = torch.tensor([-(2**31), 2**31 - 1, 16777217, -5], dtype=torch.int32)
t["i16"] = torch.tensor([-32768, 32767, 0], dtype=torch.int16)
t["i8"] = torch.tensor([-128, 127, -1], dtype=torch.int8)
t["u8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
t["bool"] = torch.tensor([True, False, True, True])
t["num_batches_tracked"] = torch.tensor(12345, dtype=torch.int64)  # I64 scalar as in BatchNorm
for name in list(t):
    if t[name].dtype != torch.float32:
        t[name + ".as_f32"] = t[name].float()
st.save(OUT, t, metadata={"format": "pt", "producer": "tools/golden/safetensors_fixture.py"},
        keep_f64=True)
# Python's own SHA-256 of the file, for the C++ SHA-256 file-hash test.
with open(OUT, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
with open(OUT + ".sha256", "w") as f:
    f.write(digest + "\n")
print(OUT, os.path.getsize(OUT), "bytes, sha256", digest)
