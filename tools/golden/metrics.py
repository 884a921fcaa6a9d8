"""Golden fixtures for io/metrics (SPEC 8). Run with Debian's Python:

    /usr/bin/python3 tools/golden/metrics.py

References:
  - AUROC: scikit-learn's roc_auc_score (ties handled as one threshold).
  - PRO curve / AUPRO: a transcription (written from its description, not copied) of the
    procedure of the official MVTec 3D-AD evaluation code, `compute_pro` +
    `trapezoid(x, y, x_max)`: 8-connected gt components (scipy.ndimage.label with a 3x3
    structure), sorted scores of all gt==0 pixels, thresholds at integer positions of
    linspace(0, n-1, T), FPR = 1 - (pos+1)/n, PRO = mean over components of the fraction of
    pixels with score > threshold, plus the point (1, 1); trapezoid integral up to the limit
    with linear interpolation at the limit, divided by the limit.
    T = 99 for the paper protocol, 100 for the official MVTec 3D-AD protocol.

Writes tests/fixtures/metrics/{auroc,pro,cli}.safetensors. Expected values are float64
stored as decimal strings in the metadata (the fixture writer stores float arrays as F32).
"""
import os
import sys
from bisect import bisect_right

import numpy as np
from scipy.ndimage import label
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics")
LIMITS = [0.3, 0.1, 0.05, 0.01]
LIMIT_KEYS = ["0.3", "0.1", "0.05", "0.01"]


# --- the MVTec 3D-AD PRO procedure --------------------------------------------------------

def component_overlap(sorted_scores, threshold):
    # fraction of the component's pixels with score > threshold
    n_at_or_below = bisect_right(sorted_scores, threshold)
    return 1.0 - n_at_or_below / len(sorted_scores)


def pro_curve(maps, gts, num_thresholds):
    structure = np.ones((3, 3), dtype=int)
    components = []
    ok_scores = []
    for m, g in zip(maps, gts):
        lab, k = label(g, structure)
        ok_scores.append(m[lab == 0].astype(np.float64))
        for c in range(1, k + 1):
            components.append(np.sort(m[lab == c].astype(np.float64)).tolist())
    ok = np.sort(np.concatenate(ok_scores))
    positions = np.linspace(0, len(ok) - 1, num=num_thresholds, dtype=int)
    fprs, pros = [1.0], [1.0]
    for pos in positions:
        t = ok[pos]
        fprs.append(1.0 - (pos + 1) / len(ok))
        pros.append(sum(component_overlap(c, t) for c in components) / len(components))
    return fprs[::-1], pros[::-1]


def trapezoid(x, y, x_max):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    correction = 0.0
    if x_max not in x:
        ins = bisect_right(x.tolist(), x_max)
        assert 0 < ins < len(x)
        y_at = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_at + y[ins - 1]) * (x_max - x[ins - 1])
    sel = x <= x_max
    x, y = x[sel], y[sel]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def aupros(maps, gts, num_thresholds):
    f, p = pro_curve(maps, gts, num_thresholds)
    return [trapezoid(f, p, lim) / lim for lim in LIMITS], f, p


# --- inputs ------------------------------------------------------------------------------

def random_gt(rng, n, h, w, p_defect=0.7):
    """gt maps with a few rectangles/blobs; some touch only diagonally (8- vs 4-connectivity)."""
    gts = np.zeros((n, h, w), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.uint8)
    for i in range(n):
        if rng.random() > p_defect and i > 0:
            continue
        labels[i] = 1
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
            hh, ww = rng.integers(1, max(2, h // 4)), rng.integers(1, max(2, w // 4))
            gts[i, y0:y0 + hh, x0:x0 + ww] = 1
        # a diagonal pair: two pixels touching only at a corner
        y, x = rng.integers(1, h - 2), rng.integers(1, w - 2)
        gts[i, y, x] = 1
        gts[i, y + 1, x + 1] = 1
    if labels.sum() == n:
        labels[-1] = 0
        gts[-1] = 0
    return gts, labels


def maps_for(rng, gts, tie_levels):
    m = rng.normal(size=gts.shape) + 1.5 * gts  # defects score higher on average
    if tie_levels:
        m = np.round(m * tie_levels) / tie_levels  # heavy ties
    return m.astype(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261128)

    # AUROC cases: continuous, tied, all-equal, tiny.
    tensors, meta = {}, {}
    cases = [
        ("cont", rng.normal(size=3000), rng.random(3000) < 0.3),
        ("ties", np.round(rng.normal(size=5000) * 2) / 2, rng.random(5000) < 0.5),
        ("alleq", np.full(200, 0.25), rng.random(200) < 0.4),
        ("tiny", np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], dtype=bool)),
        ("signed0", np.array([-0.0, 0.0, 0.0, -0.0, 1.0, -1.0]),
         np.array([1, 0, 1, 0, 1, 0], dtype=bool)),
    ]
    for name, s, y in cases:
        s = s.astype(np.float32)
        y = y.astype(np.uint8)
        s[y == 1] += 0.3 if name == "cont" else 0.0
        tensors[f"{name}.scores"] = s
        tensors[f"{name}.labels"] = y
        meta[f"{name}.auroc"] = repr(float(roc_auc_score(y, s.astype(np.float64))))
    st.save(os.path.join(OUT, "auroc.safetensors"), tensors, meta)

    # PRO cases: (name, n, h, w, tie_levels, thresholds)
    tensors, meta = {}, {}
    for name, n, h, w, ties, T in [("rand99", 8, 32, 32, 0, 99), ("rand100", 8, 32, 32, 0, 100),
                                   ("ties99", 6, 24, 40, 3, 99), ("ties100", 6, 24, 40, 3, 100),
                                   ("small99", 2, 5, 6, 0, 99)]:
        gts, _ = random_gt(rng, n, h, w)
        if name == "small99":  # fewer ok pixels than thresholds: repeated positions
            gts[:] = 0
            gts[0, 1:3, 1:3] = 1
        maps = maps_for(rng, gts, ties)
        a, f, p = aupros(maps, gts, T)
        tensors[f"{name}.maps"] = maps
        tensors[f"{name}.gt"] = gts
        meta[f"{name}.thresholds"] = str(T)
        for k, v in zip(LIMIT_KEYS, a):
            meta[f"{name}.aupro.{k}"] = repr(v)
        meta[f"{name}.fpr"] = " ".join(repr(float(v)) for v in f)
        meta[f"{name}.pro"] = " ".join(repr(float(v)) for v in p)
        meta[f"{name}.ncomp"] = str(sum(label(g, np.ones((3, 3), dtype=int))[1] for g in gts))
    st.save(os.path.join(OUT, "pro.safetensors"), tensors, meta)

    # A whole `cmdr-iad metrics` input file + expected results for both protocols.
    n, s = 10, 48
    gts, labels = random_gt(rng, n, s, s, p_defect=0.6)
    pixel = maps_for(rng, gts, 0)
    aup = maps_for(rng, gts, 4)
    img = (pixel.reshape(n, -1).max(axis=1) + 0.5 * labels).astype(np.float32)
    meta = {}
    meta["expected.i_auroc"] = repr(float(roc_auc_score(labels, img.astype(np.float64))))
    meta["expected.p_auroc"] = repr(float(roc_auc_score(gts.ravel(), pixel.ravel().astype(np.float64))))
    for proto, T in [("paper", 99), ("mvtec", 100)]:
        a, _, _ = aupros(aup, gts, T)
        for k, v in zip(LIMIT_KEYS, a):
            meta[f"expected.{proto}.aupro.{k}"] = repr(v)
    st.save(os.path.join(OUT, "cli.safetensors"),
            {"pixel_maps": pixel, "aupro_maps": aup, "gt": gts.astype(np.float32),
             "image_scores": img, "labels": labels.astype(np.float32)}, meta)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
