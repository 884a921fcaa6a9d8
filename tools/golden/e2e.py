#!/usr/bin/python3
"""Golden END-TO-END parity fixtures (issue 5 item 8): sample files -> SPEC 3 transforms ->
tiny extractors (SPEC 4) -> feature assembly -> the four CMDR networks (SPEC 5, reduced
widths) -> fusion (SPEC 7), plus three deterministic training steps (SPEC 6, the
`train --init --steps 3 --no-dropout --no-shuffle` hook).

Run with Debian's torch:  /usr/bin/python3 tools/golden/e2e.py
Writes tests/fixtures/e2e/ (read by tests/models/test_e2e_parity.cpp).

Reuses the reference modules of extractors.py (ViT, PointMAE, assemble), cmdr_nets.py
(networks, losses, e(), fuse()) and transforms.py (Pillow/torch transforms); nothing here
re-implements them.

Sizes: S = 24 (L = 576: 4.5 attention windows of 128, the last padded; Decoder3D L/32 = 18).
The tiny ViT runs at its own input side 32 (patch 8: a 4×4 token grid, upsampled to 24×24),
as the real pipeline runs DINO at 224 whatever S is. Its width 32 and Point-MAE's
3 taps × 16 = 48 are cmdr_nets.py's reduced CMDR widths (RGB = 32, XYZ = 48).

Samples: 40×30 (non-square: the RGB is edge-padded to 40×40) RGB PNGs and organised clouds
of the same size with invalid points (a hole, scattered zeros, a point with one zero
coordinate). The clouds are stored as float32 H×W×3 tensors; the C++ test writes them with
io::write_xyz_tiff and the pipeline reads the TIFF back (the TIFF codec has its own tests).
"""
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmdr_nets  # noqa: E402
import extractors  # noqa: E402
import st  # noqa: E402
import transforms  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "e2e")

S = 24
W, H = 40, 30
VIT = dict(image=32, patch=8, dim=cmdr_nets.RGB, depth=2, heads=2, mlp=64)
PMAE = dict(G=32, K=16, c1=16, c2=16, c3=32, ph=16, dim=16, depth=4, heads=2, mlp=32,
            taps=[1, 2, 3])
assert VIT["dim"] == cmdr_nets.RGB and PMAE["dim"] * len(PMAE["taps"]) == cmdr_nets.XYZ
TRAIN = ["train_000", "train_001", "train_002"]  # sorted order = step order
TEST = "test_000"


def make_sample(rng, k):
    """A smooth RGB with edges and noise, and a tilted bumpy surface with invalid points."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    rgb = np.stack([128 + 80 * np.sin(x / (5 + c + k)) * np.cos(y / (4 + c)) for c in range(3)], -1)
    rgb += rng.normal(0, 12, rgb.shape)
    rgb[5 + k:12 + k, 20:31] = rng.integers(0, 256, 3)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    px = ((x - W / 2) * 0.002).astype(np.float32)
    py = ((y - H / 2) * 0.002).astype(np.float32)
    pz = (0.6 + 0.01 * np.sin(x / 6.0 + k) * np.cos(y / 5.0) +
          rng.normal(0, 5e-4, (H, W))).astype(np.float32)
    cloud = np.stack([px, py, pz], -1).astype(np.float32)
    cloud[rng.uniform(size=(H, W)) < 0.1] = 0        # scattered invalid pixels
    cloud[3 + k:17 + k, 2:16] = 0                     # a hole: invalid positions at S
    cloud[H - 3, 25, 2] = 0                           # one zero coordinate: invalid
    cloud[:, W - 6:, :] = 0                           # an empty band at the border
    return rgb, cloud


def make_vit():
    torch.manual_seed(11)
    m = extractors.ViT(**VIT)
    with torch.no_grad():
        for n, p in m.named_parameters():
            one = n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "norm.weight"
            p.copy_(torch.randn_like(p) * (0.2 if p.dim() > 1 else 0.3) + (1.0 if one else 0.0))
    return m.eval()


def make_pmae():
    torch.manual_seed(12)
    m = extractors.PointMAE(**PMAE)
    with torch.no_grad():
        for n, p in m.named_parameters():
            base = 1.0 if (p.dim() == 1 and n.endswith("weight")) else 0.0
            p.copy_(base + torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.2))
        for bn in (m.encoder.first_conv[1], m.encoder.second_conv[1]):
            bn.running_mean.copy_(torch.randn_like(bn.running_mean) * 0.01)
            bn.running_var.copy_(torch.rand_like(bn.running_var) * 0.01 + 0.001)
    return m.eval()


def features(vit, pmae, rgb_u8, cloud):
    """The pipeline of one sample; returns the `score --dump` feature tensors."""
    vit_input = transforms.rgb_transform(rgb_u8, VIT["image"])
    rgb_input = transforms.rgb_transform(rgb_u8, S)
    pc = transforms.cloud_transform(cloud, S)
    with torch.no_grad():
        tokens = vit(vit_input, {}).numpy()
        pts, pix = extractors.valid_points(pc.numpy())
        trace = {}
        feats = pmae(pts, trace).numpy()
    grid = VIT["image"] // VIT["patch"]
    rgb_patch, xyz_patch, valid = extractors.assemble(tokens, grid, S, pts, pix,
                                                      trace["centers"].numpy(), feats)
    return {"vit_input": vit_input, "rgb_input": rgb_input, "pc_resized": pc,
            "rgb_tokens": torch.from_numpy(tokens), "xyz_centers": trace["centers"],
            "xyz_group_features": torch.from_numpy(feats), "rgb_patch": rgb_patch, "xyz_patch": xyz_patch, "valid": valid}


def score(nets, f):
    rgb, xyz, valid = f["rgb_patch"], f["xyz_patch"], f["valid"]
    out = {}
    with torch.no_grad():
        for n in cmdr_nets.NAMES:
            nets[n].eval()
        out["mapped_3d"] = nets["map2Dto3D"](rgb[None])[0]
        out["mapped_2d"] = nets["map3Dto2D"](xyz[None])[0]
        out["recon_2d"] = nets["Dec2D"](rgb[None])[0]
        out["recon_3d"] = nets["Dec3D"](xyz[None])[0]
        e = cmdr_nets.e
        fused = cmdr_nets.fuse(e(out["mapped_2d"], rgb, S), e(out["mapped_3d"], xyz, S),
                               e(out["recon_2d"], rgb, S), e(out["recon_3d"], xyz, S),
                               valid.reshape(S, S), "2d3d")
    out.update(fused)
    return out


# A gradient element below this fraction of its tensor's largest gradient at that step has
# no reliable sign: it is at the rounding level of the gradient computation (both sides'
# gradients agree to ~1e-5 of the max; the analytically-zero ones — the key bias of softmax
# attention, a bias feeding a BatchNorm — are pure rounding noise). Adam's first update
# lr·g/(|g| + 1e-8) is ~±lr whatever |g| is, so such an element may legitimately end up up
# to ~2·lr per such step away from PyTorch. The test allows that bound for the elements
# flagged here and 1e-4 of the tensor's scale for all others. Measured: 3 elements beyond
# 1e-4, all flagged (largest 0.34·lr, |g| ≤ 6e-6 of the max). The flagged elements' different
# moves also perturb the later gradients of the other elements a little: unflagged elements
# reach up to 9e-5 of their tensor's scale (Dec3D; 0.008·lr absolute), inside 1e-4.
SIGN_TAU = 1e-4


def train(nets, samples):
    """SPEC 6 with dropout 0, BatchNorm in train mode, samples in the given order, one Adam
    (lr 1e-3) per network. Losses per step in the CSV order map2d, map3d, rec2d, rec3d;
    per parameter, the number of steps at which each element's gradient was sign-ambiguous
    (|g| < SIGN_TAU · max|g|)."""
    ambiguous = {}
    opts = {n: torch.optim.Adam(nets[n].parameters(), lr=1e-3) for n in cmdr_nets.NAMES}
    csv = ["map3Dto2D", "map2Dto3D", "Dec2D", "Dec3D"]  # map2d = mapped_2d vs rgb, ...
    losses = torch.zeros(len(samples), 4)
    for s, f in enumerate(samples):
        rgb, xyz, valid = f["rgb_patch"], f["xyz_patch"], f["valid"]
        ins = {"map2Dto3D": rgb, "map3Dto2D": xyz, "Dec2D": rgb, "Dec3D": xyz}
        tgt = {"map2Dto3D": xyz, "map3Dto2D": rgb, "Dec2D": rgb, "Dec3D": xyz}
        for n in cmdr_nets.NAMES:
            nets[n].train()
            opts[n].zero_grad()
            loss = cmdr_nets.masked_cos_loss(nets[n](ins[n][None])[0], tgt[n], valid)
            loss.backward()
            for k, p in nets[n].named_parameters():
                g = p.grad.abs()
                a = (g < SIGN_TAU * g.max()).to(torch.uint8)
                key = f"{n}.{k}"
                ambiguous[key] = ambiguous.get(key, torch.zeros_like(a)) + a
            opts[n].step()
            losses[s, csv.index(n)] = loss.item()
    return losses, {k: v for k, v in ambiguous.items() if v.any()}


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(2026)
    vit, pmae = make_vit(), make_pmae()
    meta_vit = {"cmdr.heads": str(VIT["heads"])}
    meta_pmae = {"cmdr.heads": str(PMAE["heads"]), "cmdr.taps": ",".join(map(str, PMAE["taps"]))}
    st.save(os.path.join(OUT, "vit_tiny.safetensors"), dict(vit.state_dict()), meta_vit)
    st.save(os.path.join(OUT, "pmae_tiny.safetensors"),
            {"MAE_encoder." + k: v for k, v in pmae.state_dict().items()}, meta_pmae)

    clouds, feats = {}, {}
    for k, name in enumerate(TRAIN + [TEST]):
        rgb, cloud = make_sample(rng, k)
        Image.fromarray(rgb).save(os.path.join(OUT, name + ".png"), optimize=True)
        clouds[name] = cloud
        feats[name] = features(vit, pmae, rgb, cloud)
        print(name, "valid positions", int(feats[name]["valid"].sum()), "of", S * S)
    st.save(os.path.join(OUT, "clouds.safetensors"), clouds,
            {"note": "H×W×3 float32 organised clouds; the test writes them as TIFF"})

    torch.manual_seed(13)
    gen = torch.Generator().manual_seed(14)
    nets = cmdr_nets.make_nets(S, p=0.0)
    cmdr_nets.randomise(nets, gen)
    init = cmdr_nets.state(nets)
    st.save(os.path.join(OUT, "cmdr_init.safetensors"), init,
            {"side": str(S), "note": "bare state dict, reduced widths (cmdr_nets.py)"})

    dump = dict(feats[TEST])
    dump.update(score(nets, dump))
    st.save(os.path.join(OUT, "score_dump.safetensors"), dump, {"side": str(S)})

    losses, ambiguous = train(nets, [feats[n] for n in TRAIN])
    expected = {"losses": losses}
    for k, v in ambiguous.items():
        expected["ambiguous_steps." + k] = v
    expected.update(cmdr_nets.state(nets, "final."))
    for n in TRAIN:  # features of the training samples, to localise a failure
        expected[f"{n}.valid"] = feats[n]["valid"]
    for k in ("rgb_patch", "xyz_patch"):
        expected[f"{TRAIN[0]}.{k}"] = feats[TRAIN[0]][k]
    st.save(os.path.join(OUT, "train_expected.safetensors"), expected,
            {"side": str(S), "steps": "3", "columns": "map2d,map3d,rec2d,rec3d",
             "sign_tau": str(SIGN_TAU)})
    print("losses (map2d, map3d, rec2d, rec3d):\n", losses)
    total = 0
    for f in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, f))
        total += size
        print(f"{f:28s} {size:>9d} bytes")
    print("total", total)


if __name__ == "__main__":
    main()
