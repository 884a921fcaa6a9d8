"""Convert the official Point-MAE pretraining checkpoint (a pickle) to safetensors.

    /usr/bin/python3 tools/convert_pointmae.py pretrain.pth point_mae.safetensors

Reads checkpoint['base_model'] (or the dict itself), strips `module.`, then `MAE_encoder.`
or `base_model.` (WEIGHTS.md), keeps the encoder tensors (encoder.*, pos_embed.*,
blocks.blocks.*, norm.*), drops the decoder parts with a note, writes them with
tools/golden/st.py (F32; num_batches_tracked as I64) and prints the input's and the output's
SHA-256. Needs torch only for unpickling; loading the .pth is the one place a pickle is read,
so run it only on a file you trust (compare its SHA-256 with WEIGHTS.md first).
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))
import st  # noqa: E402

KNOWN_SHA = "27ded932bb0a2625d5a8eb006df199b2578598c774aee6d86b985300b6a5fd20"
KEEP = ("encoder.", "pos_embed.", "blocks.blocks.", "norm.")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def strip(key):
    changed = True
    while changed:
        changed = False
        for p in ("module.", "base_model.", "MAE_encoder."):
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    import torch
    digest = sha256(src)
    print(f"{src}: sha256 {digest}" + ("  (the widely used copy)" if digest == KNOWN_SHA else
                                       "  (NOT the widely used copy: check its origin)"))
    ckpt = torch.load(src, map_location="cpu")
    sd = ckpt.get("base_model", ckpt) if isinstance(ckpt, dict) else ckpt
    out, dropped = {}, []
    for k, v in sd.items():
        name = strip(k)
        if not name.startswith(KEEP) or not hasattr(v, "numpy"):
            dropped.append(k)
            continue
        if name in out:
            sys.exit(f"{src}: keys collide after stripping prefixes: {name}")
        v = v.detach().cpu()
        out[name] = v.float() if v.is_floating_point() else v.long()
    print(f"kept {len(out)} encoder tensors, ignored {len(dropped)} (decoder / pretraining only)")
    st.save(dst, out, metadata={"cmdr.format": "Point-MAE encoder (prefixes stripped)",
                                "cmdr.source_sha256": digest})
    print(f"{dst}: sha256 {sha256(dst)}")


if __name__ == "__main__":
    main()
