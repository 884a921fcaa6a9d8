"""Golden fixtures for the dense ops (linear, matmul, bmm, conv*, attention).

Run with Debian's torch:  /usr/bin/python3 tools/golden/ops_dense.py
Writes tests/fixtures/ops/dense_{linear,matmul,conv,attention}.safetensors.
Inputs are float32 (seeded); outputs and gradients are computed in float64 from those
float32 inputs and stored as float32, so they are the "true" values to ~1e-7.
Backward: gradients of sum(y * dy) for a random dy (torch.autograd.grad).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ops")
torch.manual_seed(1234)


def rnd(*shape):
    return torch.rand(*shape, dtype=torch.float32) * 2 - 1


def grads(fn, inputs, out_shape_like=None):
    """Returns (y, dy, [grads]) with float64 compute from float32 inputs."""
    xs = [t.double().requires_grad_(True) for t in inputs]
    y = fn(*xs)
    dy = rnd(*y.shape)
    gs = torch.autograd.grad(y, xs, dy.double())
    return y.detach().float(), dy, [g.float() for g in gs]


def linear_cases():
    d = {}
    # leading dims [3, 5] flattened by the op; with bias
    x, w, b = rnd(3, 5, 7), rnd(6, 7), rnd(6)
    y, dy, (dx, dw, db) = grads(F.linear, [x, w, b])
    d.update({"lin3d.x": x, "lin3d.w": w, "lin3d.b": b, "lin3d.y": y, "lin3d.dy": dy,
              "lin3d.dx": dx, "lin3d.dw": dw, "lin3d.db": db})
    # 2-D, no bias, odd sizes
    x, w = rnd(9, 13), rnd(1, 13)
    y, dy, (dx, dw) = grads(lambda a, b: F.linear(a, b), [x, w])
    d.update({"lin2d.x": x, "lin2d.w": w, "lin2d.y": y, "lin2d.dy": dy, "lin2d.dx": dx,
              "lin2d.dw": dw})
    st.save(os.path.join(OUT, "dense_linear.safetensors"), d)


def matmul_cases():
    d = {}
    M, K, N = 5, 7, 3
    for ta in (0, 1):
        for tb in (0, 1):
            a = rnd(K, M) if ta else rnd(M, K)
            b = rnd(N, K) if tb else rnd(K, N)
            f = lambda a, b, ta=ta, tb=tb: (a.t() if ta else a) @ (b.t() if tb else b)
            y, dy, (da, db) = grads(f, [a, b])
            p = f"mm{ta}{tb}."
            d.update({p + "a": a, p + "b": b, p + "y": y, p + "dy": dy, p + "da": da, p + "db": db})
            B = 2
            a = rnd(B, K, M) if ta else rnd(B, M, K)
            b = rnd(B, N, K) if tb else rnd(B, K, N)
            f = lambda a, b, ta=ta, tb=tb: torch.bmm(a.transpose(1, 2) if ta else a,
                                                     b.transpose(1, 2) if tb else b)
            y, dy, (da, db) = grads(f, [a, b])
            p = f"bmm{ta}{tb}."
            d.update({p + "a": a, p + "b": b, p + "y": y, p + "dy": dy, p + "da": da, p + "db": db})
    st.save(os.path.join(OUT, "dense_matmul.safetensors"), d)


def conv_cases():
    d = {}
    # name, fn, x shape, w shape, stride, pad, bias
    cases = [
        ("c1", F.conv1d, (2, 5, 11), (4, 5, 3), 2, 1),
        ("c1k1", F.conv1d, (2, 6, 9), (5, 6, 1), 1, 0),         # Decoder3D channel attention
        ("c2", F.conv2d, (2, 3, 9, 9), (6, 3, 3, 3), 2, 1),
        ("c2patch", F.conv2d, (1, 3, 16, 16), (8, 3, 8, 8), 8, 0),  # ViT patch embed (k8 s8)
        ("t1", F.conv_transpose1d, (2, 6, 5), (6, 4, 4), 2, 1),  # Decoder3D (k4 s2 p1)
        ("t1b", F.conv_transpose1d, (1, 3, 7), (3, 5, 3), 1, 1),
        ("t2", F.conv_transpose2d, (2, 5, 6, 7), (5, 4, 3, 3), 1, 1),  # Decoder2D (k3 s1 p1)
        ("t2s2", F.conv_transpose2d, (1, 3, 4, 5), (3, 2, 4, 4), 2, 1),
    ]
    for name, fn, xs, ws, s, p in cases:
        x, w = rnd(*xs), rnd(*ws)
        cout = ws[1] if fn in (F.conv_transpose1d, F.conv_transpose2d) else ws[0]
        b = rnd(cout)
        f = lambda x, w, b, fn=fn, s=s, p=p: fn(x, w, b, stride=s, padding=p)
        y, dy, (dx, dw, db) = grads(f, [x, w, b])
        q = name + "."
        d.update({q + "x": x, q + "w": w, q + "b": b, q + "y": y, q + "dy": dy, q + "dx": dx,
                  q + "dw": dw, q + "db": db,
                  q + "stride": torch.tensor([float(s)]), q + "pad": torch.tensor([float(p)])})
    st.save(os.path.join(OUT, "dense_conv.safetensors"), d)


def attention_ref(q, k, v, scale, window, mask):
    """SPEC 5.2 as a model would write it: pad T to a multiple of the window, mask padded
    keys with -inf, softmax, dropout (given mask, already scaled by 1/(1-p)), ·v, unpad.
    Returns (out, probs in our saved layout)."""
    B, H, T, dd = q.shape
    W = T if window == 0 else window
    nw = (T + W - 1) // W
    Tp = nw * W
    pad = Tp - T
    qp, kp, vp = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    qw, kw, vw = (t.reshape(B, H, nw, W, dd) for t in (qp, kp, vp))
    s = (qw @ kw.transpose(-1, -2)) * scale
    keymask = torch.zeros(Tp, dtype=torch.bool)
    keymask[T:] = True
    s = s.masked_fill(keymask.reshape(nw, W)[None, None, :, None, :], float("-inf"))
    probs = s.softmax(-1)
    pd = probs * mask if mask is not None else probs
    out = (pd @ vw).reshape(B, H, Tp, dd)[:, :, :T]
    qvalid = (~keymask).reshape(nw, W)[None, None, :, :, None].to(probs.dtype)
    saved = probs * qvalid  # rows of padded queries do not exist: zero in our layout
    if window == 0:
        saved = saved.reshape(B, H, T, T)
    return out, saved


def attention_cases():
    d = {}
    cases = [("full", (2, 3, 13, 8), 0, 0.0), ("win", (1, 2, 21, 6), 8, 0.0),
             ("fulldrop", (1, 2, 9, 4), 0, 0.25), ("windrop", (1, 2, 11, 4), 4, 0.5)]
    for name, shp, window, p in cases:
        B, H, T, dd = shp
        q, k, v = rnd(*shp), rnd(*shp), rnd(*shp)
        scale = dd ** -0.5
        W = T if window == 0 else window
        nw = (T + W - 1) // W
        mask = None
        if p > 0:
            keep = (torch.rand(B, H, nw, W, W) >= p).float() / (1 - p)
            valid = torch.zeros(nw * W)
            valid[:T] = 1
            vm = valid.reshape(nw, W)
            keep = keep * vm[None, None, :, :, None] * vm[None, None, :, None, :]
            mask = keep.double()
        f = lambda q, k, v: attention_ref(q, k, v, scale, window, mask)[0]
        y, dy, (dq, dk, dv) = grads(f, [q, k, v])
        _, probs = attention_ref(q.double(), k.double(), v.double(), scale, window, mask)
        n = name + "."
        d.update({n + "q": q, n + "k": k, n + "v": v, n + "y": y, n + "dy": dy, n + "dq": dq,
                  n + "dk": dk, n + "dv": dv, n + "probs": probs.float(),
                  n + "scale": torch.tensor([scale]), n + "window": torch.tensor([float(window)]),
                  n + "p": torch.tensor([p])})
        if mask is not None:
            m = mask.float()
            if window == 0:
                m = m.reshape(B, H, T, T)
            d[n + "mask"] = m
    st.save(os.path.join(OUT, "dense_attention.safetensors"), d)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    linear_cases()
    matmul_cases()
    conv_cases()
    attention_cases()
    print("wrote", OUT)
