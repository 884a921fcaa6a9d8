"""Independent PyTorch check of a `cmdr-iad features` dump (SPEC 4, full size).

    /usr/bin/python3 tools/golden/check_features.py DUMP.safetensors RGB_WEIGHTS XYZ_WEIGHTS

Rebuilds the extractors of tools/golden/extractors.py (from SPEC.md), loads the same weight
files (timm names; Point-MAE names with prefixes stripped), starts from the dump's
rgb_input and pc_resized (the SPEC 3 transforms have their own fixtures) and recomputes
every other tensor. Prints max |diff| / max |ref| per tensor and exits 1 above 1e-3
(index-like outputs — centres and valid — must match exactly).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import extractors as ex  # noqa: E402
import st  # noqa: E402


def main():
    dump, rgb_w, xyz_w = sys.argv[1:4]
    d, meta = st.load(dump)
    S = int(meta.get("cmdr.size", "224"))
    running = meta.get("cmdr.bn") == "running_stats"
    torch.set_grad_enabled(False)
    vit = ex.ViT(image=224, patch=8, dim=768, depth=12, heads=12, mlp=3072)
    w, _ = st.load(rgb_w)
    vit.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items() if not k.startswith("head.")})
    pm = ex.PointMAE(G=1024, K=128, c1=128, c2=256, c3=512, ph=128, dim=384, depth=12, heads=6,
                     mlp=1536, taps=[3, 7, 11])
    w, _ = st.load(xyz_w)
    sd = {}
    for k, v in w.items():
        for p in ("module.", "base_model.", "MAE_encoder."):
            if k.startswith(p):
                k = k[len(p):]
        sd[k] = torch.from_numpy(np.array(v))
    pm.load_state_dict(sd, strict=True)
    if S != 224:
        sys.exit("check_features: only S = 224 (the ViT input is then rgb_input itself)")
    ref = {}
    ref["rgb_tokens"] = vit(torch.from_numpy(d["rgb_input"].copy()), {}).numpy()
    pts, pix = ex.valid_points(d["pc_resized"])
    trace = {}
    ref["xyz_group_features"] = pm(pts, trace, running=running).numpy()
    ref["xyz_centers"] = trace["centers"].numpy()
    rgb_patch, xyz_patch, _ = ex.assemble(ref["rgb_tokens"], 28, S, pts, pix, ref["xyz_centers"],
                                          ref["xyz_group_features"])
    ref["rgb_patch"], ref["xyz_patch"] = rgb_patch.numpy(), xyz_patch.numpy()
    ref["valid"] = np.any(ref["xyz_patch"] != 0, axis=1).astype(np.float32)
    bad = False
    for k, r in ref.items():
        g = d[k]
        if g.shape != r.shape:
            print(f"{k}: shape {g.shape} vs reference {r.shape}")
            bad = True
            continue
        rel = float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30))
        exact = k in ("xyz_centers", "valid")
        ok = rel == 0.0 if exact else rel <= 1e-3
        bad |= not ok
        print(f"{k:20s} {str(g.shape):16s} max|diff|/max|ref| = {rel:.3e}  {'ok' if ok else 'FAIL'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
