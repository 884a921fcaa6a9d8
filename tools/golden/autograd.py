"""Golden fixtures for autograd/ (tape, modules, optimizers): run with Debian's torch,
    /usr/bin/python3 tools/golden/autograd.py
writes tests/fixtures/autograd/*.safetensors (seeded, a few KB each).

- optim_mlp: a small MLP (Linear-GELU-LayerNorm-Linear) trained 20 steps with MSE by each
  optimizer config; initial parameters, inputs/targets, final parameters and losses.
- optim_fixed: the same optimizer configs fed a fixed sequence of gradients (isolates the
  update formulas from the forward/backward kernels).
- modules: state_dict of a nested module (Sequential + BatchNorm + convs), BatchNorm
  running-stat updates over two training forwards, torch's fan_in for default inits.
Hyper-parameters are float32-representable so that torch's double scalars equal ours."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "autograd")


def f32(v):
    return float(np.float32(v))


# name -> (class, kwargs); mirrored in tests/autograd/test_optim.cpp
CONFIGS = {
    "adam": (torch.optim.Adam, dict(lr=f32(1e-2), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8))),
    "adam_l2": (torch.optim.Adam, dict(lr=f32(1e-2), betas=(f32(0.9), f32(0.999)), eps=f32(1e-3),
                                       weight_decay=f32(1e-2))),
    "adamw": (torch.optim.AdamW, dict(lr=f32(1e-2), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8),
                                      weight_decay=f32(5e-2))),
    "sgd_momentum": (torch.optim.SGD, dict(lr=f32(5e-2), momentum=f32(0.9), dampening=f32(0.1),
                                           weight_decay=f32(1e-3))),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=f32(5e-2), momentum=f32(0.9), nesterov=True)),
}
STEPS = 20


def make_opt(name, params):
    cls, kw = CONFIGS[name]
    return cls(params, foreach=False, **kw)  # the single-tensor implementation


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)


def optim_mlp():
    torch.manual_seed(0)
    base = MLP()
    x = torch.randn(6, 8)
    t = torch.randn(6, 4)
    out = {"x": x, "target": t}
    for k, v in base.state_dict().items():
        out["init." + k] = v.clone()
    for name in CONFIGS:
        m = MLP()
        m.load_state_dict(base.state_dict())
        opt = make_opt(name, m.parameters())
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = ((m(x) - t) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        for k, v in m.state_dict().items():
            out[name + "." + k] = v
        out[name + ".loss"] = torch.tensor(losses, dtype=torch.float32)
    st.save(os.path.join(OUT, "optim_mlp.safetensors"), out)


def optim_fixed():
    torch.manual_seed(1)
    p0 = torch.randn(48)
    q0 = torch.randn(37)
    gp = torch.randn(STEPS, 48)
    gq = torch.randn(STEPS, 37) * 1e-2
    out = {"p0": p0, "q0": q0, "gp": gp, "gq": gq}
    for name in CONFIGS:
        p = p0.clone().requires_grad_(True)
        q = q0.clone().requires_grad_(True)
        opt = make_opt(name, [p, q])
        for s in range(STEPS):
            p.grad = gp[s].clone()
            q.grad = gq[s].clone()
            opt.step()
        out[name + ".p"] = p.detach()
        out[name + ".q"] = q.detach()
    st.save(os.path.join(OUT, "optim_fixed.safetensors"), out)


class Net(nn.Module):
    """Nested: Sequential + BatchNorm1d/2d + convs + a bias-less Linear."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.LayerNorm(8),
                                  nn.Linear(8, 4, bias=False))
        self.dec = nn.Sequential(nn.ConvTranspose1d(4, 6, 3, 1, 1), nn.BatchNorm1d(6), nn.ReLU(),
                                 nn.Conv1d(6, 2, 1))
        self.bn2 = nn.BatchNorm2d(3)
        self.up = nn.ConvTranspose2d(3, 2, 2, 2, 0)


def modules():
    torch.manual_seed(2)
    net = Net()
    with torch.no_grad():  # non-trivial BN affine parameters and running stats
        for bn in (net.dec[1], net.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    out = {}
    for k, v in net.state_dict().items():
        out["init." + k] = v.clone()  # the forwards below update BN buffers in place
    meta = {"named_parameters": ",".join(n for n, _ in net.named_parameters()),
            "state_dict_keys": ",".join(net.state_dict().keys()),
            "num_parameters": str(sum(p.numel() for p in net.parameters()))}
    x1, x2, x3 = torch.randn(2, 4, 5), torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    out.update({"x1": x1, "x2": x2, "x3": x3})
    net.train()
    y1 = net.dec(x1)
    net.dec(x2)
    net.eval()
    with torch.no_grad():
        y3 = net.dec(x3)
    out["y1"] = y1.detach()
    out["y3"] = y3
    for k, v in net.dec.state_dict().items():
        out["after.dec." + k] = v
    # torch's fan_in for the default init of each layer kind
    layers = {"linear": nn.Linear(5, 7), "conv1d": nn.Conv1d(3, 50, 4),
              "conv_transpose1d": nn.ConvTranspose1d(3, 50, 4),
              "conv_transpose2d": nn.ConvTranspose2d(3, 20, 3)}
    for k, m in layers.items():
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
        out["fan_in." + k] = np.array([fan_in], dtype=np.int64)
    st.save(os.path.join(OUT, "modules.safetensors"), out, meta)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    optim_mlp()
    optim_fixed()
    modules()
    print("wrote", OUT)
