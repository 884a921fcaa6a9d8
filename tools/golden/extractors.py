"""Golden fixtures for the frozen extractors (SPEC 4.1-4.3), built from SPEC.md with torch.

Run with Debian's torch:  /usr/bin/python3 tools/golden/extractors.py
Writes tests/fixtures/extractors/*.safetensors:
  vit_tiny_weights / vit_tiny_io      tiny DINO ViT (timm names) + every intermediate
  pmae_tiny_weights / pmae_tiny_io    tiny Point-MAE, checkpoint-style names (module.,
                                      MAE_encoder., decoder keys) + every intermediate
  fps_knn                             FPS / KNN index exactness (ties on a grid)
  assembly_S30, assembly_S57          feature assembly (rgb + xyz + valid)
  vit_full, pmae_full                 full-size extractors on hash-generated weights and
                                      inputs (the generator is reproduced bit-exactly in
                                      tests/models/hash_weights.hpp); selected rows only.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "extractors")
M64 = (1 << 64) - 1

# ---------------------------------------------------------------- hash generator -----------
# u_i = mix(fnv1a64(name) + (i + 1)·φ) -> top 24 bits -> float32 in [-1, 1), exact on both sides.

def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def hash_uniform(name, n):
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    top = (z >> np.uint64(40)).astype(np.float32)
    return top * np.float32(2.0 ** -23) - np.float32(1.0)


def hash_param(name, shape, kind):
    """kind: 'w' (std .02 uniform), 'b' (bias), 'one' (norm weight), 'rm', 'rv'."""
    u = hash_uniform(name, int(np.prod(shape)) if len(shape) else 1).reshape(shape)
    if kind == "w":
        return u * np.float32(0.034641016)  # uniform with std 0.02
    if kind == "b":
        return u * np.float32(0.02)
    if kind == "one":
        return np.float32(1.0) + u * np.float32(0.1)
    if kind == "rm":
        return u * np.float32(0.1)
    if kind == "rv":
        return np.float32(1.0) + u * np.float32(0.5)
    raise ValueError(kind)


def kind_of(module_root, name, t):
    if name.endswith("running_mean"):
        return "rm"
    if name.endswith("running_var"):
        return "rv"
    if t.dim() == 1 and name.endswith(".weight"):
        return "one"
    if name.endswith(".bias"):
        return "b"
    return "w"


def fill_hash(module):
    sd = module.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if name.endswith("num_batches_tracked"):
                continue
            t.copy_(torch.from_numpy(hash_param(name, tuple(t.shape), kind_of(module, name, t))))

# ---------------------------------------------------------------- modules (SPEC 4) ----------

class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * self.scale
        a = a.softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, eps, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)


class ViT(nn.Module):
    """SPEC 4.1 with timm's names."""

    def __init__(self, image, patch, dim, depth, heads, mlp):
        super().__init__()
        g = image // patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, g * g + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, 1e-6, True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, img, trace):
        x = self.patch_embed.proj(img[None])            # [1, D, g, g]
        x = x.flatten(2).transpose(1, 2)                 # [1, T, D]
        trace["patch_tokens"] = x[0]
        x = torch.cat([self.cls_token, x], dim=1) + self.pos_embed
        trace["embedded"] = x[0]
        for i, b in enumerate(self.blocks):
            x = b(x)
            trace[f"block_out.{i}"] = x[0]
        return self.norm(x)[0, 1:]


def fps(points, m):
    """SPEC 4.2.1: float32, (dx² + dy²) + dz², running minimum, first index of the max."""
    p = points.astype(np.float32)
    mind = np.full(len(p), np.float32(1e10), dtype=np.float32)
    out, cur = [0], 0
    for _ in range(1, m):
        d = p - p[cur]
        dd = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) + d[:, 2] * d[:, 2]
        mind = np.minimum(mind, dd)
        cur = int(np.argmax(mind))  # numpy: first occurrence
        out.append(cur)
    return np.array(out, dtype=np.int64)


def knn(points, queries, k):
    """SPEC 4.2.2: exact, sorted by (distance, index)."""
    p = points.astype(np.float32)
    idx = np.arange(len(p))
    out = []
    for q in queries.astype(np.float32):
        d = p - q
        dd = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) + d[:, 2] * d[:, 2]
        out.append(np.lexsort((idx, dd))[:k])
    return np.stack(out).astype(np.int64)


class SampleBN(nn.Module):
    pass


def bn_apply(bn, x, running):
    """BatchNorm1d on [B, C, L]: SPEC 4.2.3 sample statistics accumulated in float64
    (biased variance), or the stored running statistics."""
    if running:
        mean, var = bn.running_mean.double(), bn.running_var.double()
    else:
        xd = x.double()
        mean = xd.mean(dim=(0, 2))
        var = ((xd - mean[None, :, None]) ** 2).mean(dim=(0, 2))
    invstd = (1.0 / torch.sqrt(var + bn.eps)).float()
    return (x - mean.float()[None, :, None]) * invstd[None, :, None] * bn.weight[None, :, None] \
        + bn.bias[None, :, None]


class Encoder(nn.Module):
    def __init__(self, c1, c2, c3, dim):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, c1, 1), nn.BatchNorm1d(c1), nn.ReLU(),
                                        nn.Conv1d(c1, c2, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(2 * c2, c3, 1), nn.BatchNorm1d(c3), nn.ReLU(),
                                         nn.Conv1d(c3, dim, 1))

    def forward(self, groups, running):
        G, K, _ = groups.shape
        x = groups.transpose(2, 1)                                   # [G, 3, K]
        fc = self.first_conv
        f = fc[3](F.relu(bn_apply(fc[1], fc[0](x), running)))       # [G, c2, K]
        g = f.max(dim=2, keepdim=True)[0]
        f = torch.cat([g.expand(-1, -1, K), f], dim=1)              # [G, 2c2, K]
        sc = self.second_conv
        f = sc[3](F.relu(bn_apply(sc[1], sc[0](f), running)))       # [G, dim, K]
        return f.max(dim=2)[0]


class Blocks(nn.Module):
    def __init__(self, dim, depth, heads, mlp):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, 1e-5, False) for _ in range(depth)])


class PointMAE(nn.Module):
    def __init__(self, G, K, c1, c2, c3, ph, dim, depth, heads, mlp, taps):
        super().__init__()
        self.G, self.K, self.taps = G, K, taps
        self.encoder = Encoder(c1, c2, c3, dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, ph), nn.GELU(), nn.Linear(ph, dim))
        self.blocks = Blocks(dim, depth, heads, mlp)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, points_np, trace, running=False):
        cidx = fps(points_np, self.G)
        centers = points_np[cidx]
        nn_idx = knn(points_np, centers, self.K)
        pts = torch.from_numpy(points_np)
        c = torch.from_numpy(centers)
        nb = pts[torch.from_numpy(nn_idx)] - c[:, None, :]
        trace.update(fps_idx=cidx, centers=c, knn_idx=nn_idx.reshape(-1), neighborhood=nb)
        x = self.encoder(nb, running)
        pos = self.pos_embed(c)
        trace.update(tokens=x, pos=pos)
        outs = []
        for i in range(max(self.taps) + 1):
            x = self.blocks.blocks[i](x[None] + pos[None])[0]
            trace[f"block_out.{i}"] = x
            if i in self.taps:
                outs.append(self.norm(x))
        return torch.cat(outs, dim=1)

# ---------------------------------------------------------------- feature assembly -----------

def valid_points(cloud):
    """cloud [3, H, W] -> (points [N, 3], pixel indices) with all coordinates non-zero."""
    flat = cloud.reshape(3, -1).T
    pix = np.nonzero(np.all(flat != 0, axis=1))[0]
    return flat[pix].astype(np.float32), pix.astype(np.int64)


def assemble(tokens, grid, S, points, pixel, centers, feats):
    C2 = tokens.shape[1]
    img = torch.from_numpy(tokens).T.reshape(1, C2, grid, grid)
    rgb = F.interpolate(img, size=(S, S), mode="bilinear", align_corners=False)
    rgb_patch = rgb.reshape(C2, S * S).T.contiguous()
    # 3-NN: d = Σ(a−b)² in float32, ties -> lower centre index (stable sort).
    d = points[:, None, :] - centers[None, :, :]
    dd = (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]
    idx = np.argsort(dd, axis=1, kind="stable")[:, :3]
    dist = np.take_along_axis(dd, idx, axis=1)
    rec = np.float32(1.0) / (dist + np.float32(1e-8))
    w = rec / ((rec[:, 0:1] + rec[:, 1:2]) + rec[:, 2:3])
    pf = (w[:, 0:1] * feats[idx[:, 0]] + w[:, 1:2] * feats[idx[:, 1]]) + w[:, 2:3] * feats[idx[:, 2]]
    C3 = feats.shape[1]
    grid3 = np.zeros((C3, S * S), dtype=np.float32)
    grid3[:, pixel] = pf.T
    g = torch.from_numpy(grid3).reshape(1, C3, S, S)
    g = F.avg_pool2d(g, 3, stride=1)
    g = F.adaptive_avg_pool2d(g, (S, S))
    xyz_patch = g.reshape(C3, S * S).T.contiguous()
    # SPEC 4.3 'sums to exactly 0' read as 'all-zero row' (see models/feature_assembly.cpp).
    valid = (xyz_patch != 0).any(dim=1).float()
    return rgb_patch, xyz_patch, valid


def flat(d):
    out = {}
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
        out[k] = v
    return out


def make_vit_tiny():
    torch.manual_seed(1)
    m = ViT(image=32, patch=8, dim=32, depth=2, heads=2, mlp=64)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5) + (1.0 if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "norm.weight" else 0.0))
    img = torch.randn(3, 32, 32)
    trace = {}
    with torch.no_grad():
        out = m(img, trace)
    w = dict(m.state_dict())
    w["head.weight"] = torch.randn(10, 32)  # a classifier head: an unexpected key (note)
    w["head.bias"] = torch.randn(10)
    st.save(os.path.join(OUT, "vit_tiny_weights.safetensors"), flat(w))
    io = {"image": img, "out": out}
    io.update(trace)
    st.save(os.path.join(OUT, "vit_tiny_io.safetensors"), flat(io))


TINY_PMAE = dict(G=16, K=8, c1=16, c2=32, c3=64, ph=16, dim=48, depth=5, heads=4, mlp=96,
                 taps=[1, 3, 4])


def make_pmae_tiny():
    torch.manual_seed(2)
    m = PointMAE(**TINY_PMAE)
    with torch.no_grad():
        for n, p in m.named_parameters():
            base = 1.0 if (p.dim() == 1 and n.endswith("weight")) else 0.0
            p.copy_(base + torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.2))
        for bn in (m.encoder.first_conv[1], m.encoder.second_conv[1]):
            bn.running_mean.copy_(torch.randn_like(bn.running_mean) * 0.01)
            bn.running_var.copy_(torch.rand_like(bn.running_var) * 0.01 + 0.001)
            bn.num_batches_tracked.fill_(1234)
    rng = np.random.default_rng(3)
    n = 200
    pts = np.stack([rng.uniform(-0.05, 0.05, n), rng.uniform(-0.05, 0.05, n),
                    0.6 + rng.uniform(-0.01, 0.01, n)], axis=1).astype(np.float32)
    trace = {}
    with torch.no_grad():
        feats = m(pts, trace)
        feats_running = m(pts, {}, running=True)
    # Checkpoint-style names (WEIGHTS.md): module. + MAE_encoder. prefixes, decoder keys.
    w = {}
    for k, v in m.state_dict().items():
        w["module.MAE_encoder." + k] = v
    w["module.mask_token"] = torch.randn(1, 1, 48)
    w["module.MAE_decoder.blocks.0.norm1.weight"] = torch.randn(48)
    w["module.decoder_pos_embed.0.weight"] = torch.randn(128, 3)
    w["module.increase_dim.0.weight"] = torch.randn(96, 48, 1)
    st.save(os.path.join(OUT, "pmae_tiny_weights.safetensors"), flat(w))
    io = {"points": pts, "features": feats, "features_running": feats_running}
    io.update(trace)
    st.save(os.path.join(OUT, "pmae_tiny_io.safetensors"), flat(io))


def make_fps_knn():
    rng = np.random.default_rng(4)
    # Half on an integer grid (many exactly equal distances), half random, plus duplicates.
    g = np.stack(np.meshgrid(np.arange(12), np.arange(12), np.arange(12), indexing="ij"), -1)
    grid = g.reshape(-1, 3).astype(np.float32) * np.float32(0.01)
    rnd = rng.uniform(0, 0.12, (1200, 3)).astype(np.float32)
    pts = np.concatenate([grid, rnd, grid[:100]], axis=0)
    pts = pts[rng.permutation(len(pts))]
    fidx = fps(pts, 256)
    kidx = knn(pts, pts[fidx], 32)
    st.save(os.path.join(OUT, "fps_knn.safetensors"),
            {"points": pts, "fps_idx": fidx, "knn_idx": kidx.reshape(-1).astype(np.int64)})


def make_assembly(S, grid, C2, G, C3, seed):
    rng = np.random.default_rng(seed)
    cloud = np.stack([rng.uniform(-0.1, 0.1, (S, S)), rng.uniform(-0.1, 0.1, (S, S)),
                      rng.uniform(0.5, 0.7, (S, S))]).astype(np.float32)
    cloud[:, rng.uniform(size=(S, S)) < 0.3] = 0          # scattered invalid pixels
    cloud[:, 2:12, 3:14] = 0                               # a hole: invalid positions
    cloud[0, S - 2, 5] = 0                                 # one zero coordinate is invalid
    pts, pix = valid_points(cloud)
    centers = pts[fps(pts, G)]
    tokens = rng.standard_normal((grid * grid, C2)).astype(np.float32)
    feats = rng.standard_normal((G, C3)).astype(np.float32)
    rgb_patch, xyz_patch, valid = assemble(tokens, grid, S, pts, pix, centers, feats)
    st.save(os.path.join(OUT, f"assembly_S{S}.safetensors"),
            {"cloud": cloud, "tokens": tokens, "centers": centers, "features": feats,
             "rgb_patch": rgb_patch, "xyz_patch": xyz_patch, "valid": valid,
             "grid": np.array([grid], dtype=np.int64)})

# ---------------------------------------------------------------- full size ------------------

def full_image():
    return hash_uniform("input.image", 3 * 224 * 224).reshape(3, 224, 224) * np.float32(2.0)


def full_cloud(S=224):
    """Organised S×S cloud: a paraboloid cap on a disc of radius 113 px (~40k points),
    coordinates built in float32 with integer-derived values (bit-identical in C++)."""
    i = np.arange(S, dtype=np.int64)[:, None]
    j = np.arange(S, dtype=np.int64)[None, :]
    x = (2 * j - (S - 1)).astype(np.float32) * np.float32(0.00025) + np.zeros((S, 1), np.float32)
    y = (2 * i - (S - 1)).astype(np.float32) * np.float32(0.00025) + np.zeros((1, S), np.float32)
    bump = ((i * 7 + j * 13) % 17).astype(np.float32) * np.float32(1e-5)
    z = ((x * x + y * y) * np.float32(0.5) + np.float32(0.7)) + bump
    inside = ((2 * i - (S - 1)) ** 2 + (2 * j - (S - 1)) ** 2) < (2 * 113) ** 2
    cloud = np.stack([x, y, z]).astype(np.float32)
    cloud[:, ~inside] = 0
    return cloud


ROWS_VIT = np.arange(0, 784, 13)
ROWS_PMAE = np.arange(0, 1024, 16)
ROWS_PATCH = np.concatenate([np.arange(0, 224, 3), np.arange(224 * 111, 224 * 111 + 224, 9),
                             np.array([224 * 224 - 1, 224 * 3 + 3])]).astype(np.int64)


def make_vit_full():
    torch.manual_seed(0)
    m = ViT(image=224, patch=8, dim=768, depth=12, heads=12, mlp=3072)
    fill_hash(m)
    with torch.no_grad():
        out = m(torch.from_numpy(full_image()), {})
    rgb_patch, _, _ = assemble(out.numpy(), 28, 224, np.zeros((3, 3), np.float32),
                               np.array([0, 1, 2]), np.eye(3, dtype=np.float32),
                               np.zeros((3, 1), np.float32))
    st.save(os.path.join(OUT, "vit_full.safetensors"),
            {"rows": ROWS_VIT.astype(np.int64), "tokens_rows": out[ROWS_VIT],
             "tokens_mean": out.mean(dim=0), "tokens_std": out.std(dim=0),
             "patch_rows": ROWS_PATCH, "rgb_patch_rows": rgb_patch[ROWS_PATCH]})


def make_pmae_full():
    torch.manual_seed(0)
    m = PointMAE(G=1024, K=128, c1=128, c2=256, c3=512, ph=128, dim=384, depth=12, heads=6,
                 mlp=1536, taps=[3, 7, 11])
    fill_hash(m)
    cloud = full_cloud()
    pts, pix = valid_points(cloud)
    print("full cloud valid points:", len(pts))
    trace = {}
    with torch.no_grad():
        feats = m(pts, trace)
    f = feats.numpy()
    tokens = hash_uniform("input.tokens", 784 * 768).reshape(784, 768)
    _, xyz_patch, valid = assemble(tokens, 28, 224, pts, pix, trace["centers"].numpy(), f)
    st.save(os.path.join(OUT, "pmae_full.safetensors"),
            {"fps_idx": trace["fps_idx"], "knn_idx_first": trace["knn_idx"][:128 * 8],
             "rows": ROWS_PMAE.astype(np.int64), "features_rows": feats[ROWS_PMAE],
             "features_mean": feats.mean(dim=0), "patch_rows": ROWS_PATCH,
             "xyz_patch_rows": xyz_patch[ROWS_PATCH], "valid": valid.numpy().astype(np.uint8),
             "n_points": np.array([len(pts)], dtype=np.int64)})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    which = sys.argv[1:] or ["tiny", "full"]
    if "tiny" in which:
        make_vit_tiny()
        make_pmae_tiny()
        make_fps_knn()
        make_assembly(30, 7, 5, 12, 7, 5)
        make_assembly(57, 28, 3, 40, 4, 6)
    if "full" in which:
        make_vit_full()
        make_pmae_full()
    for f in sorted(os.listdir(OUT)):
        print(f"{f:32s} {os.path.getsize(os.path.join(OUT, f)):>9d} bytes")
