#!/usr/bin/python3
"""Golden fixtures for the CMDR-IAD networks, losses, training steps and fusion (SPEC 5-7).

Run with Debian's torch:  /usr/bin/python3 tools/golden/cmdr_nets.py
Writes tests/fixtures/models/*.safetensors (read by tests/models/test_cmdr_*.cpp).

The reference modules below are built from SPEC.md's text (module names and nn.Sequential
indices as in SPEC 5). Channel widths are REDUCED (rgb 32, xyz 48, Decoder2D hidden 16 with
8 heads, Decoder3D widths 32/24/16/8, attention 6) so the fixtures stay small; the
structure (layers, order, names, windows of 128 tokens, L/32 bottleneck) is SPEC's. The C++
networks take the same widths as parameters (defaults = SPEC's 768/1152).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "models")

RGB, XYZ = 32, 48
D2 = dict(dim=RGB, hidden=16, heads=8, window=128, mlp_hidden=32, conv1=12, conv2=8,
          rec_hidden=64)
D3 = dict(channels=XYZ, widths=(32, 24, 16, 8), att_hidden=6)


# ---------------------------------------------------------------- reference modules (SPEC 5)
class GELU(nn.GELU):
    """nn.GELU whose incoming gradient is made contiguous. Debian's torch 1.13 GELU backward
    returns garbage (huge values / NaN, run-to-run different) when the upstream gradient is
    non-contiguous, which Decoder2D's `flatten(2).transpose(1, 2)` after conv_decoder.8
    produces. The forward and the math are unchanged."""

    def forward(self, x):
        y = super().forward(x)
        if y.requires_grad:
            y.register_hook(lambda g: g.contiguous())
        return y


class FeatureMappingMLP(nn.Module):  # SPEC 5.1
    def __init__(self, i, o, p=0.1):
        super().__init__()
        r = (i + o) // 2
        self.input = nn.Linear(i, r)
        self.act = GELU()
        self.projection = nn.Sequential(nn.Linear(r, r), GELU(), nn.LayerNorm(r),
                                        nn.Dropout(p), nn.Linear(r, r), GELU(),
                                        nn.LayerNorm(r))
        self.output = nn.Linear(r, o)

    def forward(self, x):
        return self.output(self.projection(self.act(self.input(x))))


class WindowAttention(nn.Module):  # SPEC 5.2 attn.attn
    def __init__(self, dim, heads, window, p):
        super().__init__()
        self.heads, self.hd, self.window = heads, dim // heads, window
        self.scale = self.hd ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(p)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(p)

    def forward(self, x):  # [B, L, D]
        b, n, d = x.shape
        w = self.window
        nw = (n + w - 1) // w
        pad = nw * w - n
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, L, hd]
        if pad:  # pad the last window; padded keys get -inf scores
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        q, k, v = (t.reshape(b, self.heads, nw, w, self.hd) for t in (q, k, v))
        attn = (q @ k.transpose(-2, -1)) * self.scale  # [B, H, nw, w, w]
        if pad:
            key_pos = torch.arange(nw * w).reshape(nw, 1, w)
            attn = attn.masked_fill(key_pos >= n, float("-inf"))
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).reshape(b, self.heads, nw * w, self.hd)[:, :, :n]
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    def __init__(self, dim, heads, window, mlp_hidden, p):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, p)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), GELU(), nn.Dropout(p),
                                 nn.Linear(mlp_hidden, dim), nn.Dropout(p))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Decoder2D(nn.Module):  # SPEC 5.2
    def __init__(self, dim, hidden, heads, window, mlp_hidden, conv1, conv2, rec_hidden, p=0.1):
        super().__init__()
        r = hidden
        self.projection = nn.Sequential(nn.Linear(dim, r), GELU(), nn.LayerNorm(r),
                                        nn.Dropout(p), nn.Linear(r, r), GELU(),
                                        nn.LayerNorm(r))
        self.attn = Block(r, heads, window, mlp_hidden, p)
        self.conv_decoder = nn.Sequential(
            nn.ConvTranspose2d(r, conv1, 3, 1, 1), nn.BatchNorm2d(conv1), GELU(),
            nn.ConvTranspose2d(conv1, conv2, 3, 1, 1), nn.BatchNorm2d(conv2), GELU(),
            nn.ConvTranspose2d(conv2, r, 3, 1, 1), nn.BatchNorm2d(r), GELU())
        self.reconstruct = nn.Sequential(nn.Linear(r, rec_hidden), GELU(), nn.Dropout(p),
                                         nn.Linear(rec_hidden, dim), nn.LayerNorm(dim))

    def forward(self, x):  # [B, L, dim]
        b, n, _ = x.shape
        s = int(round(math.sqrt(n)))
        h = self.attn(self.projection(x))
        h = h.transpose(1, 2).reshape(b, -1, s, s)
        h = self.conv_decoder(h)
        h = h.flatten(2).transpose(1, 2)
        return self.reconstruct(h)


class Decoder3D(nn.Module):  # SPEC 5.3
    def __init__(self, length, channels, widths, att_hidden, p=0.1):
        super().__init__()
        lb = length // 32
        self.projection = nn.Sequential(nn.Linear(length, lb), GELU(), nn.LayerNorm(lb),
                                        nn.Dropout(p), nn.Linear(lb, lb), GELU(),
                                        nn.LayerNorm(lb))
        layers, cin = [], channels
        for w in widths:
            layers += [nn.ConvTranspose1d(cin, w, 4, 2, 1), nn.BatchNorm1d(w), GELU()]
            cin = w
        layers += [nn.ConvTranspose1d(cin, channels, 4, 2, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Conv1d(channels, att_hidden, 1),
                                       nn.ReLU(), nn.Conv1d(att_hidden, channels, 1), nn.Sigmoid())

    def forward(self, x):  # [B, L, C]
        h = self.decoder(self.projection(x.transpose(1, 2)))
        return (h * self.attention(h)).transpose(1, 2)


NAMES = ["map2Dto3D", "map3Dto2D", "Dec2D", "Dec3D"]


def make_nets(side, p):
    return {"map2Dto3D": FeatureMappingMLP(RGB, XYZ, p), "map3Dto2D": FeatureMappingMLP(XYZ, RGB, p),
            "Dec2D": Decoder2D(**D2, p=p), "Dec3D": Decoder3D(side * side, **D3, p=p)}


def randomise(nets, gen):
    """Default init plus random LayerNorm/BatchNorm affine and BN running stats, so a swapped
    weight/bias or an ignored running stat shows."""
    with torch.no_grad():
        for net in nets.values():
            for m in net.modules():
                if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                    m.num_batches_tracked.fill_(3)


def state(nets, prefix=""):
    out = {}
    for name in NAMES:
        for k, v in nets[name].state_dict().items():
            out[f"{prefix}{name}.{k}"] = v.detach().clone()
    return out


def sample(side, gen, invalid_frac=0.2):
    n = side * side
    rgb = torch.randn(n, RGB, generator=gen)
    xyz = torch.randn(n, XYZ, generator=gen)
    bad = torch.rand(n, generator=gen) < invalid_frac
    xyz[bad] = 0
    valid = (xyz.sum(-1) != 0).float()
    return rgb, xyz, valid


# ---------------------------------------------------------------- losses and fusion (SPEC 6, 7)
def masked_cos_loss(a, b, valid):
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    bn = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    cos = (an * bn).sum(-1)
    return 1 - cos[valid > 0].mean()


def e(a, b, side):
    return (F.normalize(a, dim=-1, eps=1e-12) - F.normalize(b, dim=-1, eps=1e-12)).norm(
        dim=-1).reshape(side, side)


def box(x, k):
    return F.avg_pool2d(x[None, None], k, stride=1, padding=k // 2, count_include_pad=True)[0, 0]


def boxes(x, k, times):
    for _ in range(times):
        x = box(x, k)
    return x


def fuse(d_map2d, d_map3d, d_rec2d, d_rec3d, valid, mode):
    out = {}
    v = valid > 0
    if mode != "2d" and not v.any():
        mode = "2d" if mode != "3d" else "3d"
    if mode == "2d":
        out["d_rec2d"] = boxes(boxes(d_rec2d, 5, 3), 7, 2)
        f = out["d_rec2d"]
    elif mode == "3d":
        out["d_rec3d"] = d_rec3d * v
        f = out["d_rec3d"]
    else:
        dm2, dm3, dr2, dr3 = (d * v for d in (d_map2d, d_map3d, d_rec2d, d_rec3d))
        dr2 = boxes(boxes(dr2, 5, 3), 7, 2)
        out.update(d_map2d=dm2, d_map3d=dm3, d_rec2d=dr2, d_rec3d=dr3)
        j = dm2 * dm3
        m = j.mean()
        sigma = box((j - m) ** 2, 7).sqrt()
        w = 4 + 2 * sigma / (sigma.mean() + 1e-8)
        a_map = torch.sigmoid(w * j) * j
        w2, w3 = torch.exp(-0.3 * dr2), torch.exp(-0.3 * dr3)
        a_rec = (w2 * dr2 + w3 * dr3) / (w2 + w3 + 1e-8)
        out.update(a_map=a_map, a_rec=a_rec)
        f = {"2d3d": a_map * a_rec, "map": a_map, "rec": a_rec}[mode]
        f = f * v
    f = boxes(boxes(f, 5, 5), 7, 3)
    out["fused"] = f
    nz = f[f != 0]
    out["pixel_map"] = f / f.mean().sqrt()
    out["image_score"] = (f / nz.mean().sqrt()).max().reshape(1)
    out["aupro_map"] = f / nz.mean()
    return out


# ---------------------------------------------------------------- fixture files
def nets_fixture(side, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    nets = make_nets(side, p=0.0)
    randomise(nets, gen)
    rgb, xyz, valid = sample(side, gen)
    fx = {"rgb": rgb, "xyz": xyz, "valid": valid}
    fx.update(state(nets, "state."))
    ins = {"map2Dto3D": rgb, "map3Dto2D": xyz, "Dec2D": rgb, "Dec3D": xyz}
    tgt = {"map2Dto3D": xyz, "map3Dto2D": rgb, "Dec2D": rgb, "Dec3D": xyz}
    out_name = {"map2Dto3D": "mapped_3d", "map3Dto2D": "mapped_2d", "Dec2D": "recon_2d",
                "Dec3D": "recon_3d"}
    # eval mode: running stats, no dropout; plus the whole inference pipeline (SPEC 7)
    ev = {}
    with torch.no_grad():
        for name in NAMES:
            nets[name].eval()
            ev[name] = nets[name](ins[name][None])[0]
            fx[f"eval.{out_name[name]}"] = ev[name]
    d = {"d_map2d": e(ev["map3Dto2D"], rgb, side), "d_map3d": e(ev["map2Dto3D"], xyz, side),
         "d_rec2d": e(ev["Dec2D"], rgb, side), "d_rec3d": e(ev["Dec3D"], xyz, side)}
    for k, v in fuse(d["d_map2d"], d["d_map3d"], d["d_rec2d"], d["d_rec3d"],
                     valid.reshape(side, side), "2d3d").items():
        fx[f"pipeline.{k}"] = v
    # train mode (BatchNorm batch statistics, dropout p = 0): outputs, losses, gradients,
    # running stats after the forward
    grads = {}
    for name in NAMES:
        net = nets[name]
        net.train()
        net.zero_grad()
        y = net(ins[name][None])[0]
        loss = masked_cos_loss(y, tgt[name], valid)
        loss.backward()
        fx[f"train.{out_name[name]}"] = y.detach()
        fx[f"loss.{name}"] = loss.detach().reshape(1)
        for k, p in net.named_parameters():
            grads[f"grad.{name}.{k}"] = p.grad.detach().clone()
        for k, b in net.named_buffers():
            if "running" in k:
                fx[f"after.{name}.{k}"] = b.detach().clone()
    st.save(os.path.join(OUT, f"nets_S{side}.safetensors"), fx,
            {"side": side, "rgb": RGB, "xyz": XYZ, "note": "reduced widths, SPEC 5 structure"})
    st.save(os.path.join(OUT, f"grads_S{side}.safetensors"), grads, {"side": side})


def train_fixture(side, seed, steps=3):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    nets = make_nets(side, p=0.0)
    randomise(nets, gen)
    fx = state(nets, "init.")
    samples = [sample(side, gen) for _ in range(steps)]
    for i, (rgb, xyz, valid) in enumerate(samples):
        fx[f"rgb.{i}"], fx[f"xyz.{i}"], fx[f"valid.{i}"] = rgb, xyz, valid
    opts = {n: torch.optim.Adam(nets[n].parameters(), lr=1e-3) for n in NAMES}
    losses = torch.zeros(steps, 4)
    for s, (rgb, xyz, valid) in enumerate(samples):
        ins = {"map2Dto3D": rgb, "map3Dto2D": xyz, "Dec2D": rgb, "Dec3D": xyz}
        tgt = {"map2Dto3D": xyz, "map3Dto2D": rgb, "Dec2D": rgb, "Dec3D": xyz}
        for j, n in enumerate(NAMES):
            nets[n].train()
            opts[n].zero_grad()
            loss = masked_cos_loss(nets[n](ins[n][None])[0], tgt[n], valid)
            loss.backward()
            opts[n].step()
            losses[s, j] = loss.item()
    fx["losses"] = losses
    fx.update(state(nets, "final."))
    st.save(os.path.join(OUT, f"train_S{side}.safetensors"), fx,
            {"side": side, "steps": steps, "columns": ",".join(NAMES)})


def fusion_fixture(side, seed):
    gen = torch.Generator().manual_seed(seed)
    fx = {}
    n = side * side
    d = {k: torch.randn(side, side, generator=gen).abs() * s
         for k, s in (("d_map2d", 0.5), ("d_map3d", 0.7), ("d_rec2d", 0.4), ("d_rec3d", 0.6))}
    valid = (torch.rand(side, side, generator=gen) > 0.25).float()
    valid[:3, :] = 0  # a band without geometry, as at image borders
    fx.update(d)
    fx["valid"] = valid
    for mode in ("2d3d", "2d", "3d", "map", "rec"):
        for k, v in fuse(d["d_map2d"], d["d_map3d"], d["d_rec2d"], d["d_rec3d"], valid, mode).items():
            fx[f"{mode}.{k}"] = v
    # e() and box filters on their own
    a = torch.randn(n, 5, generator=gen)
    b = torch.randn(n, 5, generator=gen)
    a[7] = 0  # a zero vector: normalised with the 1e-12 clamp
    fx["e.a"], fx["e.b"], fx["e.out"] = a, b, e(a, b, side)
    x = torch.randn(side, side + 3, generator=gen)
    fx["box.x"] = x
    for k in (3, 5, 7):
        fx[f"box.{k}"] = box(x, k)
    st.save(os.path.join(OUT, "fusion.safetensors"), fx, {"side": side})


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    nets_fixture(16, 1)   # L = 256: two full attention windows
    nets_fixture(24, 2)   # L = 576: 4.5 windows, the last one padded
    train_fixture(16, 3)
    fusion_fixture(16, 4)
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))
