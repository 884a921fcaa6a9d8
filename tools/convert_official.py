#!/usr/bin/python3
"""Convert the reference release's four PyTorch checkpoints (one .pth per network) into
one cmdr-iad bare state dict (safetensors).

    /usr/bin/python3 tools/convert_official.py \
        --map2Dto3D m23.pth --map3Dto2D m32.pth --Dec2D d2.pth --Dec3D d3.pth \
        --out bagel.safetensors

Needs Debian's python3-torch (development/conversion time only). Each .pth may be a bare
state dict or a dict holding one under 'model', 'state_dict' or 'model_state_dict'; a
leading 'module.' (DataParallel) is stripped. Keys are written under the SPEC 5 prefixes
map2Dto3D. / map3Dto2D. / Dec2D. / Dec3D. exactly as PyTorch names them. Give only the
networks your mode uses (2d: --Dec2D; 3d: --Dec3D).

The output carries no cmdr-iad metadata on purpose: it is a *bare state dict*, which
`cmdr-iad detect/evaluate/score` load when --mode and --size are given (they warn that no
extractor hashes can be checked). The loader checks every name and shape against the
networks it builds and lists what is missing or unexpected.
"""
import argparse
import hashlib
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))
import st  # noqa: E402

PREFIXES = ("map2Dto3D", "map3Dto2D", "Dec2D", "Dec3D")


def unwrap(obj, path):
    if isinstance(obj, dict):
        for k in ("model", "state_dict", "model_state_dict"):
            if k in obj and isinstance(obj[k], dict):
                return obj[k]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    sys.exit(f"convert_official: {path}: not a state dict (found {type(obj).__name__} with keys "
             f"{list(obj)[:8] if isinstance(obj, dict) else '-'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    for p in PREFIXES:
        ap.add_argument(f"--{p}", metavar="PTH", help=f"state dict of {p}")
    ap.add_argument("--out", required=True, help="output .safetensors (must not exist)")
    a = ap.parse_args()
    if os.path.exists(a.out):
        sys.exit(f"convert_official: {a.out} exists; refusing to overwrite")
    out = {}
    for p in PREFIXES:
        path = getattr(a, p)
        if not path:
            continue
        sd = unwrap(torch.load(path, map_location="cpu"), path)
        h = hashlib.sha256(open(path, "rb").read()).hexdigest()
        print(f"{p}: {path} ({len(sd)} tensors, sha256 {h})")
        for k, v in sd.items():
            k = k[len("module."):] if k.startswith("module.") else k
            if v.dtype in (torch.float16, torch.bfloat16, torch.float64):
                v = v.float()
            out[f"{p}.{k}"] = v
    if not out:
        sys.exit("convert_official: give at least one of " + ", ".join("--" + p for p in PREFIXES))
    tmp = a.out + ".tmp"
    st.save(tmp, out)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {len(out)} tensors, sha256 "
          f"{hashlib.sha256(open(a.out, 'rb').read()).hexdigest()}")


if __name__ == "__main__":
    main()
