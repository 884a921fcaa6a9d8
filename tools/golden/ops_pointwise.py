"""Golden fixtures for the non-dense ops (ops/norm.cpp, elementwise.cpp, reduce.cpp,
resample.cpp). Run with Debian's torch:  /usr/bin/python3 tools/golden/ops_pointwise.py
Writes tests/fixtures/ops/pointwise_{norm,elementwise,reduce,resample}.safetensors.
Each case `c` stores its inputs, `c.y` (forward), `c.dy` (upstream gradient) and the
gradients `c.dx`, ... from torch autograd. Large inputs at the SPEC sizes are "pattern"
tensors that the C++ test rebuilds exactly (see pattern() below), so only outputs are stored.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ops")
torch.manual_seed(1234)


def pattern(shape, mul=7919, mod=1000):
    """Exactly representable values: ((i·mul) mod mod)/mod − 0.5 for flat index i."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    return torch.from_numpy((((i * mul) % mod).astype(np.float32) / np.float32(mod)
                             - np.float32(0.5)).reshape(shape))


def run(fn, inputs, dy=None, store_dy=True):
    """Forward fn(*inputs) with grads; returns (y, dy, grads)."""
    xs = [t.clone().requires_grad_(True) for t in inputs]
    y = fn(*xs)
    if dy is None:
        dy = torch.randn_like(y)
    y.backward(dy)
    return y.detach(), dy, [x.grad for x in xs]


# ---------------------------------------------------------------- norms
def norm_cases():
    T = {}
    for name, shape in [("bn1d", (4, 6, 10)), ("bn2d", (3, 5, 4, 6)), ("bn2c", (8, 3))]:
        C = shape[1]
        x = torch.randn(shape) * 2 + 0.5
        w = torch.rand(C) + 0.5
        b = torch.randn(C)
        rm = torch.randn(C) * 0.1
        rv = torch.rand(C) + 0.5
        T[name + ".x"], T[name + ".w"], T[name + ".b"] = x, w, b
        T[name + ".rm0"], T[name + ".rv0"] = rm.clone(), rv.clone()
        rm1, rv1 = rm.clone(), rv.clone()
        y, dy, (dx, dw, db) = run(lambda x, w, b: F.batch_norm(x, rm1, rv1, w, b, True, 0.1, 1e-5),
                                  [x, w, b])
        T[name + ".y"], T[name + ".dy"], T[name + ".dx"] = y, dy, dx
        T[name + ".dw"], T[name + ".db"] = dw, db
        T[name + ".rm1"], T[name + ".rv1"] = rm1, rv1
        dims = [0] + list(range(2, len(shape)))
        T[name + ".mean"] = x.double().mean(dims).float()
        T[name + ".invstd"] = (1.0 / torch.sqrt(x.double().var(dims, unbiased=False) + 1e-5)).float()
        # eval mode with the running stats
        T[name + ".yeval"] = F.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-5)
    # Tiny variance on a large mean (SPEC 4.2: why the statistics are accumulated in float64);
    # reference computed in float64.
    x = 50.0 + 1e-3 * torch.randn(2, 4, 300)
    T["bntiny.x"] = x
    xd = x.double()
    T["bntiny.y"] = F.batch_norm(xd, None, None, None, None, True, 0.1, 1e-5).float()
    # layer norm, two eps values (SPEC: 1e-6 for the ViT, 1e-5 elsewhere)
    for name, shape, eps in [("ln6", (5, 7, 33), 1e-6), ("ln5", (9, 64), 1e-5)]:
        D = shape[-1]
        x = torch.randn(shape) * 1.5 + 0.3
        w = torch.rand(D) + 0.5
        b = torch.randn(D)
        y, dy, (dx, dw, db) = run(lambda x, w, b: F.layer_norm(x, (D,), w, b, eps), [x, w, b])
        T.update({name + ".x": x, name + ".w": w, name + ".b": b, name + ".y": y,
                  name + ".dy": dy, name + ".dx": dx, name + ".dw": dw, name + ".db": db})
    return T


# ---------------------------------------------------------------- elementwise
def elementwise_cases():
    T = {}
    x = torch.randn(4, 37) * 3
    xp = torch.rand(4, 37) * 4 + 0.05
    acts = {"gelu": (lambda t: F.gelu(t), x), "relu": (torch.relu, x),
            "sigmoid": (torch.sigmoid, x), "tanh": (torch.tanh, x), "exp": (torch.exp, x * 0.7),
            "sqrt": (torch.sqrt, xp)}
    for name, (fn, inp) in acts.items():
        y, dy, (dx,) = run(fn, [inp])
        T.update({name + ".x": inp, name + ".y": y, name + ".dy": dy, name + ".dx": dx})
    for name, shape in [("softmax", (6, 19)), ("softmax3", (2, 3, 130))]:
        inp = torch.randn(shape) * 4
        y, dy, (dx,) = run(lambda t: torch.softmax(t, -1), [inp])
        T.update({name + ".x": inp, name + ".y": y, name + ".dy": dy, name + ".dx": dx})
    pairs = [("p0", (4, 1, 5), (3, 1)), ("p1", (2, 3), (2, 3)), ("p2", (6,), (2, 1, 6)),
             ("p3", (3, 4), ()), ("p4", (2, 3, 4, 5), (3, 1, 1))]
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    for pname, sa, sb in pairs:
        a = torch.randn(sa)
        b = torch.randn(sb)
        T[pname + ".a"], T[pname + ".b"] = a, b
        bd = torch.sign(b) * (b.abs() + 0.5)  # divisor away from 0
        T[pname + ".bdiv"] = bd
        for oname, fn in ops.items():
            bb = bd if oname == "div" else b
            y, dy, (da, db) = run(fn, [a, bb])
            c = pname + "." + oname
            T.update({c + ".y": y, c + ".dy": dy, c + ".da": da, c + ".db": db})
    return T


# ---------------------------------------------------------------- reductions
def reduce_cases():
    T = {}
    x = torch.randn(3, 5, 7)
    T["red.x"] = x
    for axis in [0, 1, 2]:
        for keep in [False, True]:
            for oname in ["sum", "mean", "max"]:
                if oname == "sum":
                    fn = lambda t: t.sum(axis, keepdim=keep)  # noqa: E731
                elif oname == "mean":
                    fn = lambda t: t.mean(axis, keepdim=keep)  # noqa: E731
                else:
                    fn = lambda t: t.max(axis, keepdim=keep)[0]  # noqa: E731
                y, dy, (dx,) = run(fn, [x])
                c = "red.%s.%d.%d" % (oname, axis, int(keep))
                T.update({c + ".y": y, c + ".dy": dy, c + ".dx": dx})
                if oname == "max":
                    T[c + ".idx"] = x.max(axis, keepdim=keep)[1]
    # l2 normalize: last axis, a middle axis, and rows where the eps clamp is active
    x = torch.randn(4, 9)
    x[1] = 1e-8 * torch.randn(9)
    x[2] = 0.0
    for name, inp, axis, eps in [("l2a", x, -1, 1e-6), ("l2b", torch.randn(3, 6, 5), 1, 1e-12)]:
        y, dy, (dx,) = run(lambda t: F.normalize(t, p=2.0, dim=axis, eps=eps), [inp])
        T.update({name + ".x": inp, name + ".y": y, name + ".dy": dy, name + ".dx": dx})
    # cosine similarity per SPEC 6: <a/max(|a|,eps), b/max(|b|,eps)>
    a1, b1 = torch.randn(5, 8), torch.randn(5, 8)
    a1[3] = 1e-9 * torch.randn(8)
    for name, a, b, axis, eps in [("cosa", a1, b1, -1, 1e-6),
                                  ("cosb", torch.randn(3, 4, 6), torch.randn(3, 4, 6), 1, 1e-6)]:
        fn = lambda u, v: (F.normalize(u, dim=axis, eps=eps) *  # noqa: E731
                           F.normalize(v, dim=axis, eps=eps)).sum(axis)
        y, dy, (da, db) = run(fn, [a, b])
        T.update({name + ".a": a, name + ".b": b, name + ".y": y, name + ".dy": dy,
                  name + ".da": da, name + ".db": db})
    # index_select / index_add along dim 0
    x = torch.randn(7, 3, 4)
    idx = torch.tensor([6, 0, 6, 2, 1], dtype=torch.int64)
    y, dy, (dx,) = run(lambda t: t.index_select(0, idx), [x])
    T.update({"isel.x": x, "isel.idx": idx, "isel.y": y, "isel.dy": dy, "isel.dx": dx})
    src = torch.randn(5, 3, 4)
    y, dy, (dsrc,) = run(lambda s: torch.zeros(7, 3, 4).index_add(0, idx, s), [src])
    T.update({"iadd.src": src, "iadd.y": y, "iadd.dy": dy, "iadd.dsrc": dsrc})
    return T


# ---------------------------------------------------------------- pooling / resampling
def resample_cases():
    T = {}
    x = torch.randn(2, 3, 9, 11)
    T["pool.x"] = x
    for k, pad in [(3, 0), (3, 1), (5, 2), (7, 3), (4, 1)]:
        y, dy, (dx,) = run(lambda t: F.avg_pool2d(t, k, stride=1, padding=pad,
                                                  count_include_pad=True), [x])
        c = "avg.%d.%d" % (k, pad)
        T.update({c + ".y": y, c + ".dy": dy, c + ".dx": dx})
    xa = torch.randn(1, 2, 9, 11)
    T["ada.x"] = xa
    for oh, ow in [(5, 7), (13, 17), (9, 4)]:
        y, dy, (dx,) = run(lambda t: F.adaptive_avg_pool2d(t, (oh, ow)), [xa])
        c = "ada.%dx%d" % (oh, ow)
        T.update({c + ".y": y, c + ".dy": dy, c + ".dx": dx})
    # SPEC 4.3: AvgPool 3x3 (no pad) 224 -> 222, adaptive back to 224 (pattern input)
    xs = pattern((1, 1, 222, 222))
    y, dy, (dx,) = run(lambda t: F.adaptive_avg_pool2d(t, (224, 224)), [xs],
                       dy=pattern((1, 1, 224, 224), 104729, 997))
    T.update({"ada222.y": y, "ada222.dx": dx})
    xb = torch.randn(2, 3, 5, 7)
    T["bil.x"] = xb
    for oh, ow in [(9, 4), (11, 15), (5, 7), (3, 2)]:
        y, dy, (dx,) = run(lambda t: F.interpolate(t, size=(oh, ow), mode="bilinear",
                                                   align_corners=False), [xb])
        c = "bil.%dx%d" % (oh, ow)
        T.update({c + ".y": y, c + ".dy": dy, c + ".dx": dx})
    x28 = torch.randn(1, 2, 28, 28)
    y, dy, (dx,) = run(lambda t: F.interpolate(t, size=(56, 56), mode="bilinear",
                                               align_corners=False), [x28])
    T.update({"bil28.x": x28, "bil28.y": y, "bil28.dy": dy, "bil28.dx": dx})
    # SPEC 4.3: 28 -> 224 (pattern input and dy)
    y, dy, (dx,) = run(lambda t: F.interpolate(t, size=(224, 224), mode="bilinear",
                                               align_corners=False), [pattern((1, 1, 28, 28))],
                       dy=pattern((1, 1, 224, 224), 104729, 997))
    T.update({"bil224.y": y, "bil224.dx": dx})
    xn = torch.randn(2, 3, 7, 5)
    T["near.x"] = xn
    for oh, ow in [(5, 13), (14, 10), (3, 2)]:
        y, dy, (dx,) = run(lambda t: F.interpolate(t, size=(oh, ow), mode="nearest"), [xn])
        c = "near.%dx%d" % (oh, ow)
        T.update({c + ".y": y, c + ".dy": dy, c + ".dx": dx})
    # SPEC 3.2 sizes: 800 -> 224 (rows) and 400 -> 224 (columns); input value = h·1000 + w
    h = torch.arange(800, dtype=torch.float32).view(800, 1)
    w = torch.arange(400, dtype=torch.float32).view(1, 400)
    xs = (h * 1000 + w).view(1, 1, 800, 400)
    T["near800.y"] = F.interpolate(xs, size=(224, 224), mode="nearest")
    # also 224 -> 800 / 600 -> 224 style sizes on the index mapping
    xs2 = (torch.arange(600, dtype=torch.float32).view(600, 1) * 1000 +
           torch.arange(7, dtype=torch.float32).view(1, 7)).view(1, 1, 600, 7)
    T["near600.y"] = F.interpolate(xs2, size=(224, 3), mode="nearest")
    # PyTorch's second bilinear kernel (input also channels-last contiguous: C == 1 or H·W == 1)
    for name, shape, size in [("bilc1", (2, 1, 5, 7), (9, 4)), ("bilhw1", (2, 3, 1, 1), (4, 5))]:
        xx = torch.randn(shape)
        y, dy, (dx,) = run(lambda t: F.interpolate(t, size=size, mode="bilinear",
                                                   align_corners=False), [xx])
        T.update({name + ".x": xx, name + ".y": y, name + ".dy": dy, name + ".dx": dx})
    return T


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, fn in [("norm", norm_cases), ("elementwise", elementwise_cases),
                     ("reduce", reduce_cases), ("resample", resample_cases)]:
        T = fn()
        path = os.path.join(OUT, "pointwise_%s.safetensors" % name)
        st.save(path, T, {"generator": "tools/golden/ops_pointwise.py", "torch": torch.__version__})
        print(path, os.path.getsize(path), "bytes,", len(T), "tensors")


if __name__ == "__main__":
    main()
