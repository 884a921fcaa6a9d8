#!/usr/bin/python3
"""Times the stages of bench/bench_stages.cpp in PyTorch (issue 8 item 5), fp32 and bf16.

Run (Debian's torch, 2 threads, OpenBLAS told to use its SkylakeX kernels):
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tools/bench_torch.py --side 224 \\
        --json torch_stages.json --md torch_stages.md
    --side 56 for a quick run; --stages dino_vit,net_forward.Dec2D,... to pick stages;
    --precisions fp32 (or bf16) to run one of them.

The reference modules are the golden-fixture ones (tools/golden/extractors.py,
tools/golden/cmdr_nets.py) at SPEC widths, seeded random weights, random inputs of the
same shapes as the C++ bench: image 3×224×224 (DINO always runs at 224, SPEC 4.1), a point
cloud of S² points (the C++ synthetic sample has ~all S² positions valid), rgb_patch
[S², 768], xyz_patch [S², 1152]. bf16 = torch.autocast("cpu", torch.bfloat16) around the
same fp32 modules.

A timing is never printed without its kernel: the script reports torch's build (BLAS,
oneDNN), a GEMM probe (2048³ torch.mm, fp32 and bf16 under autocast, GFLOP/s) and, for each
stage, the oneDNN primitives the stage executed (captured with oneDNN verbose for one extra
run: "none" means ATen's own kernels / the BLAS, i.e. OpenBLAS sgemm for fp32 linear
layers). On AMD CPUs Debian's OpenBLAS sgemm can run far below the machine's peak whatever
OPENBLAS_CORETYPE says, while oneDNN's bf16 path is fast: read the probe line first.

GFLOP counts are the same as the C++ bench (2·MAC of the dense layers; forward+backward =
3× forward), so the JSON rows join with the C++ bench's JSON on the stage name.
"""
import argparse
import json
import math
import os
import re
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "golden"))
import cmdr_nets  # noqa: E402
import extractors  # noqa: E402

# SPEC widths (SPEC 4.1, 4.2, 5.1-5.3)
VIT = dict(image=224, patch=8, dim=768, depth=12, heads=12, mlp=3072)
PMAE = dict(G=1024, K=128, c1=128, c2=256, c3=512, ph=128, dim=384, depth=12, heads=6, mlp=1536,
            taps=[3, 7, 11])
RGB, XYZ = 768, 1152
D2 = dict(dim=RGB, hidden=384, heads=8, window=128, mlp_hidden=768, conv1=256, conv2=128,
          rec_hidden=1536)
D3 = dict(channels=XYZ, widths=(768, 512, 256, 128), att_hidden=144)
NETS = ["map2Dto3D", "map3Dto2D", "Dec2D", "Dec3D"]


# torch 1.13's CPU autocast does not list layer_norm, so a bf16 activation meets the fp32
# LayerNorm weight and fails ("expected scalar type BFloat16 but found Float"). Newer torch
# runs layer_norm in fp32 under CPU autocast; do the same (a no-op in fp32 runs).
def _layer_norm_fp32(self, x):
    return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


torch.nn.LayerNorm.forward = _layer_norm_fp32


# ---------------------------------------------------------------- FLOPs (as bench_stages.cpp)
def vit_flops():
    T, D, M = (224 // 8) ** 2 + 1, 768, 3072
    patch = 2 * (T - 1) * 3 * 64 * D
    block = 2 * T * (3 * D * D + D * D + 2 * D * M) + 4 * T * T * D
    return patch + 12 * block


def pmae_encoder_flops():
    gk = PMAE["G"] * PMAE["K"]
    c1, c2, c3, d = PMAE["c1"], PMAE["c2"], PMAE["c3"], PMAE["dim"]
    # As the C++ point_mae_flops: second conv counted split (per point c2->c3 plus per group
    # c2->c3 on the max-pooled half); the reference module computes the full 2·c2 concat.
    return 2 * gk * (3 * c1 + c1 * c2 + c2 * c3 + c3 * d) + 2 * PMAE["G"] * c2 * c3


def pmae_flops():
    G, D, M = PMAE["G"], PMAE["dim"], PMAE["mlp"]
    pos = 2 * G * (3 * PMAE["ph"] + PMAE["ph"] * D)
    block = 2 * G * (3 * D * D + D * D + 2 * D * M) + 4 * G * G * D
    return pmae_encoder_flops() + pos + 12 * block


def mlp_flops(rows, i, o):
    r = (i + o) // 2
    return 2 * rows * (i * r + 2 * r * r + r * o)


def dec2d_flops(side, rec_rows):
    L, r, dim, w = side * side, D2["hidden"], D2["dim"], D2["window"]
    full, rest = L // w, L % w
    pairs = full * w * w + rest * rest
    f = 2 * L * (dim * r + r * r)
    f += 2 * L * (3 * r * r + r * r + 2 * r * D2["mlp_hidden"])
    f += 4 * pairs * r
    f += 2 * L * 9 * (r * D2["conv1"] + D2["conv1"] * D2["conv2"] + D2["conv2"] * r)
    f += 2 * rec_rows * (r * D2["rec_hidden"] + D2["rec_hidden"] * dim)
    return f


def dec3d_flops(side):
    L, C = side * side, XYZ
    lb = L / 32
    f = 2 * C * (L * lb + lb * lb)
    cin, length = C, lb
    for w in D3["widths"]:
        f += 2 * cin * w * 4 * length
        cin, length = w, length * 2
    f += 2 * cin * C * 4 * length
    f += 2 * 2 * C * D3["att_hidden"]
    return f


def net_flops(name, side):
    L = side * side
    return {"map2Dto3D": mlp_flops(L, RGB, XYZ), "map3Dto2D": mlp_flops(L, XYZ, RGB),
            "Dec2D": dec2d_flops(side, L), "Dec3D": dec3d_flops(side)}[name]


# ---------------------------------------------------------------- kernel identification
class CaptureFd:
    """Captures what C code writes to file descriptor 1 (oneDNN verbose goes to stdout)."""

    def __enter__(self):
        sys.stdout.flush()
        self.tmp = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(1)
        os.dup2(self.tmp.fileno(), 1)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode(errors="replace")
        self.tmp.close()


def onednn_primitives(fn):
    """Runs fn once with oneDNN verbose on; returns {"prim:impl:dtype": count}."""
    mk = torch.backends.mkldnn
    if not hasattr(mk, "verbose"):
        return {"(oneDNN verbose unavailable)": 1}
    with CaptureFd() as cap:
        with mk.verbose(mk.VERBOSE_ON):
            fn()
    out = {}
    for line in cap.text.splitlines():
        p = line.split(",")
        if len(p) > 6 and p[0] in ("onednn_verbose", "dnnl_verbose") and p[1] == "exec":
            dtype = re.search(r"src_(\w+?)::", line)
            key = f"{p[3]}:{p[4]}:{dtype.group(1) if dtype else '?'}"
            out[key] = out.get(key, 0) + 1
    return out


def kernel_summary(prims):
    if not prims:
        return "none (ATen/BLAS)"
    return " ".join(f"{k}×{v}" for k, v in sorted(prims.items(), key=lambda kv: -kv[1]))


def gemm_probe(precision, n=2048):
    a = torch.rand(n, n)
    b = torch.rand(n, n)

    def run():
        with autocast(precision):
            return torch.mm(a, b)

    run()
    best = min(timed(run) for _ in range(3))
    return 2 * n ** 3 / best, kernel_summary(onednn_primitives(run))


class autocast:
    def __init__(self, precision):
        self.ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else None

    def __enter__(self):
        if self.ctx:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx:
            self.ctx.__exit__(*exc)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- torch FPS / KNN (vectorised)
def fps_torch(p, m):
    mind = torch.full((p.shape[0],), 1e10)
    cur, out = 0, [0]
    for _ in range(1, m):
        d = p - p[cur]
        mind = torch.minimum(mind, (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) + d[:, 2] * d[:, 2])
        cur = int(torch.argmax(mind))
        out.append(cur)
    return torch.tensor(out)


def knn_torch(p, q, k, chunk=128):
    out = []
    for i in range(0, q.shape[0], chunk):
        d = torch.cdist(q[i:i + chunk], p)
        out.append(torch.topk(d, k, largest=False).indices)
    return torch.cat(out)


# ---------------------------------------------------------------- stages
def build(side, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    vit = extractors.ViT(**VIT).eval()
    pmae = extractors.PointMAE(**PMAE).eval()
    nets = {"map2Dto3D": cmdr_nets.FeatureMappingMLP(RGB, XYZ),
            "map3Dto2D": cmdr_nets.FeatureMappingMLP(XYZ, RGB),
            "Dec2D": cmdr_nets.Decoder2D(**D2), "Dec3D": cmdr_nets.Decoder3D(side * side, **D3)}
    img = torch.randn(3, 224, 224, generator=g)
    # A smooth surface of S² points (a cap), like the synthetic sample's cloud.
    u = torch.linspace(-1, 1, side)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([xx * 0.05, yy * 0.05, 0.7 + 0.01 * (xx ** 2 + yy ** 2)], -1).reshape(-1, 3)
    pts = (pts + 1e-5 * torch.randn(pts.shape, generator=g)).float()
    L = side * side
    rgb = torch.randn(L, RGB, generator=g)
    xyz = torch.randn(L, XYZ, generator=g)
    valid = torch.ones(L)
    return vit, pmae, nets, img, pts, rgb, xyz, valid


def stages(side, seed):
    vit, pmae, nets, img, pts, rgb, xyz, valid = build(side, seed)
    G, K = PMAE["G"], PMAE["K"]
    cidx = fps_torch(pts, G)
    centers = pts[cidx]
    nn_idx = knn_torch(pts, centers, K)
    nb = pts[nn_idx] - centers[:, None, :]
    ins = {"map2Dto3D": rgb, "map3Dto2D": xyz, "Dec2D": rgb, "Dec3D": xyz}
    tgt = {"map2Dto3D": xyz, "map3Dto2D": rgb, "Dec2D": rgb, "Dec3D": xyz}
    L = side * side

    def pmae_blocks(x):
        pos = pmae.pos_embed(centers)
        outs = []
        for i in range(max(PMAE["taps"]) + 1):
            x = pmae.blocks.blocks[i](x[None] + pos[None])[0]
            if i in PMAE["taps"]:
                outs.append(pmae.norm(x))
        return torch.cat(outs, 1)

    def fusion(outs):
        d = {"d_map2d": cmdr_nets.e(outs["map3Dto2D"], rgb, side),
             "d_map3d": cmdr_nets.e(outs["map2Dto3D"], xyz, side),
             "d_rec2d": cmdr_nets.e(outs["Dec2D"], rgb, side),
             "d_rec3d": cmdr_nets.e(outs["Dec3D"], xyz, side)}
        return cmdr_nets.fuse(d["d_map2d"], d["d_map3d"], d["d_rec2d"], d["d_rec3d"],
                              valid.reshape(side, side), "2d3d")["image_score"]

    def all_nets():
        return {n: nets[n](ins[n][None].float())[0].float() for n in NETS}

    s = {}
    s["dino_vit"] = (vit_flops(), True, lambda: vit(img, {}))
    s["pmae_fps"] = (0, True, lambda: fps_torch(pts, G))
    s["pmae_knn"] = (0, True, lambda: knn_torch(pts, centers, K))
    s["pmae_encoder"] = (pmae_encoder_flops(), True, lambda: pmae.encoder(nb, False))
    def pmae_forward():
        cen = pts[fps_torch(pts, G)]
        return pmae_blocks(pmae.encoder(pts[knn_torch(pts, cen, K)] - cen[:, None], False))

    s["pmae_forward"] = (pmae_flops(), True, pmae_forward)
    # The golden reference assembly (numpy 3-NN + torch interpolate / pools).
    s["assembly"] = (0, True, lambda: extractors.assemble(
        vit_tokens_np, 28, side, pts.numpy(), np.arange(L), centers.numpy(), feats_np))
    for n in NETS:
        s[f"net_forward.{n}"] = (net_flops(n, side), True,
                                 lambda n=n: nets[n].eval()(ins[n][None]))

    def train(n):
        nets[n].train()
        nets[n].zero_grad()
        y = nets[n](ins[n][None])[0].float()
        cmdr_nets.masked_cos_loss(y, tgt[n], valid).backward()

    for n in NETS:
        s[f"net_train.{n}"] = (3 * net_flops(n, side), False, lambda n=n: train(n))
    outs_cache = {}

    def fusion_stage():
        if not outs_cache:
            with torch.no_grad():
                for n in NETS:
                    nets[n].eval()
                outs_cache.update(all_nets())
        return fusion(outs_cache)

    s["fusion"] = (0, True, fusion_stage)

    def detect():  # no file reading / transforms (the inputs are tensors already)
        for n in NETS:
            nets[n].eval()
        tokens = vit(img, {})
        cen = pts[fps_torch(pts, G)]
        feats = pmae_blocks(pmae.encoder(pts[knn_torch(pts, cen, K)] - cen[:, None], False))
        r, x, v = extractors.assemble(tokens.float().numpy(), 28, side, pts.numpy(),
                                      np.arange(L), cen.numpy(), feats.float().numpy())
        ins.update(map2Dto3D=r, Dec2D=r, map3Dto2D=x, Dec3D=x)
        try:
            return fusion(all_nets())
        finally:
            ins.update(map2Dto3D=rgb, Dec2D=rgb, map3Dto2D=xyz, Dec3D=xyz)

    s["detect"] = (vit_flops() + pmae_flops() + sum(net_flops(n, side) for n in NETS), True,
                   detect)
    opts = {n: torch.optim.Adam(nets[n].parameters(), lr=1e-3) for n in NETS}

    def train_step():
        for n in NETS:
            train(n)
            opts[n].step()

    s["train_step"] = (3 * sum(net_flops(n, side) for n in NETS), False, train_step)
    with torch.no_grad():
        vit_tokens_np = vit(img, {}).numpy()
        feats_np = torch.randn(G, 3 * PMAE["dim"]).numpy()
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=int(os.environ.get("CMDR_BENCH_S", 224)))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2, help="timed runs per stage (after 1 warm-up); "
                    "with fp32 on a slow OpenBLAS the S = 224 run takes about an hour, use 1")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--stages", default="", help="comma-separated stage names (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    ap.add_argument("--md", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    info = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "side": a.side,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "blas": ", ".join(re.findall(r"(?:BLAS_INFO|LAPACK_INFO)=\w+", torch.__config__.show())),
        "config": torch.__config__.show(),
    }
    for p in ("fp32", "bf16"):
        rate, kern = gemm_probe(p)
        info[f"gemm_{p}_GFLOP/s"] = rate * 1e-9
        info[f"gemm_{p}_kernel"] = kern
        print(f"# GEMM probe 2048³ {p}: {rate * 1e-9:.1f} GFLOP/s, oneDNN: {kern}", flush=True)
    print(f"# torch {info['torch']}, {info['threads']} threads, OPENBLAS_CORETYPE="
          f"{info['OPENBLAS_CORETYPE']}, mkldnn {info['mkldnn_available']}", flush=True)
    wanted = [x for x in a.stages.split(",") if x]
    rows = []
    for prec in a.precisions.split(","):
        st = stages(a.side, a.seed)
        peak = info[f"gemm_{prec}_GFLOP/s"] * 1e9
        for name, (flops, no_grad, fn) in st.items():
            if wanted and name not in wanted:
                continue

            def call():
                with autocast(prec):
                    if no_grad:
                        with torch.no_grad():
                            return fn()
                    return fn()

            # The warm-up run (untimed) also records the oneDNN primitives the stage uses.
            # A stage that fails in a precision (torch 1.13's CPU autocast leaves layer_norm
            # in fp32, so e.g. Decoder2D's residual + LayerNorm mixes dtypes) is reported as
            # a row with the error, not timed.
            try:
                if name == "fusion":
                    call()  # fills its cache of network outputs outside the kernel capture
                kern = kernel_summary(onednn_primitives(call))
            except RuntimeError as e:
                msg = str(e).splitlines()[0]
                rows.append({"stage": name, "precision": prec, "side": a.side, "ms": None,
                             "GFLOP": flops * 1e-9, "GFLOP/s": None, "peak_frac": None,
                             "gemm_peak_GFLOP/s": peak * 1e-9, "maxrss_MiB": peak_rss_mib(),
                             "onednn_kernels": f"FAILED: {msg}"})
                print(f"{name:22s} {prec}  FAILED: {msg}", flush=True)
                continue
            ts = [timed(call) for _ in range(a.iters)]
            ms = 1e3 * sum(ts) / len(ts)
            row = {"stage": name, "precision": prec, "side": a.side, "ms": ms,
                   "GFLOP": flops * 1e-9,
                   "GFLOP/s": flops / (ms * 1e-3) * 1e-9 if flops else None,
                   "peak_frac": flops / (ms * 1e-3) / peak if flops else None,
                   "gemm_peak_GFLOP/s": peak * 1e-9, "maxrss_MiB": peak_rss_mib(),
                   "onednn_kernels": kern}
            rows.append(row)
            gf = f"{row['GFLOP/s']:.1f}" if flops else "-"
            print(f"{name:22s} {prec}  {ms:10.1f} ms  {gf:>7s} GFLOP/s  kernels: {kern}",
                  flush=True)
    out = {"info": info, "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    md = ["| stage | precision | ms | GFLOP | GFLOP/s | frac of GEMM probe | oneDNN kernels |",
          "|---|---|---:|---:|---:|---:|---|"]
    def num(v, f):
        return "" if v is None else format(v, f)

    for r in rows:
        md.append(f"| {r['stage']} | {r['precision']} | {num(r['ms'], '.1f')} | {r['GFLOP']:.1f} | "
                  f"{num(r['GFLOP/s'], '.1f')} | {num(r['peak_frac'], '.2f')} | "
                  f"{r['onednn_kernels']} |")
    head = (f"torch {info['torch']}, {info['threads']} threads, S = {a.side}, "
            f"OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}; GEMM probe 2048³: fp32 "
            f"{info['gemm_fp32_GFLOP/s']:.1f} GFLOP/s ({info['gemm_fp32_kernel']}), bf16 "
            f"{info['gemm_bf16_GFLOP/s']:.1f} GFLOP/s ({info['gemm_bf16_kernel']})")
    text = head + "\n\n" + "\n".join(md) + "\n"
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
