"""Golden fixtures for io/preprocess (SPEC 2), made with Open3D (Debian python3-open3d):

    /usr/bin/python3 tools/golden/preprocess.py

Builds a few small synthetic organized clouds (pinhole camera over a tilted support plane,
a large object, a small separate object, floating outliers, dropouts, depth noise), then
runs the SPEC 2 procedure with Open3D:
  1. border strips (10 px top, bottom, left, right; corners appear twice, as the reference
     concatenates the four strips), non-zero points -> segment_plane(0.004, 50, 1000);
     zero every point with |plane . (p, 1)| < 0.005;
  2. zero-pad to a square, side = max(H, W) rounded up to a multiple of 100, centred;
  3. cluster_dbscan(eps 0.006, min_points 30) on the non-zero points; keep the largest
     cluster (noise, label -1, is not a cluster).
Writes tests/fixtures/preprocess/scans.safetensors with per case: xyz (H×W×3), the plane
(metadata), plane_removed (H×W, 1 = zeroed by step 1), labels (S×S int32: DBSCAN label of
each non-zero padded point, -2 for zero points), keep (S×S, 1 = survives step 3).
"""
import os
import sys

import numpy as np
import open3d as o3d

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "preprocess")


def ray_dirs(h, w, f):
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([(u - (w - 1) / 2) / f, (v - (h - 1) / 2) / f, np.ones_like(u)], -1)


def sphere_hit(r, c, radius):
    # nearest t > 0 with |t r - c| = radius, else inf
    a = np.sum(r * r, -1)
    b = -2 * np.sum(r * c, -1)
    cc = np.dot(c, c) - radius * radius
    disc = b * b - 4 * a * cc
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    return np.where(t > 0, t, np.inf)


def make_scan(rng, h, w, tilt, dropout_band, f=300.0):
    # f = 300: ~1 mm pixel spacing at 0.3 m
    r = ray_dirs(h, w, f)
    n = np.array([tilt[0], tilt[1], -1.0])
    n /= np.linalg.norm(n)
    p0 = np.array([0.0, 0.0, 0.30])
    t_plane = np.dot(p0, n) / np.sum(r * n, -1)
    up = -n if n[2] < 0 else n  # plane normal pointing to the camera
    up = -up if up[2] > 0 else up
    big_c = p0 + np.array([0.004, -0.003, 0.0]) + up * 0.010
    small_c = p0 + np.array([-0.030, 0.022, 0.0]) + up * 0.004
    t = t_plane.copy()
    for c, rad in [(big_c, 0.020), (small_c, 0.008)]:
        t = np.minimum(t, sphere_hit(r, c, rad))
    t = t + rng.normal(scale=0.0003, size=t.shape)  # depth noise along the ray
    xyz = r * t[..., None]
    # floating outliers between camera and plane
    k = rng.choice(h * w, size=40, replace=False)
    xyz.reshape(-1, 3)[k] *= rng.uniform(0.6, 0.9, size=(40, 1))
    # dropouts
    xyz[rng.random((h, w)) < 0.01] = 0
    if dropout_band:
        xyz[:, :3] = 0
    return xyz.astype(np.float32)


def edges(xyz, b=10):
    parts = [xyz[:b, :], xyz[-b:, :], xyz[:, :b], xyz[:, -b:]]
    pts = np.concatenate([p.reshape(-1, 3) for p in parts], 0)
    return pts[np.any(pts != 0, axis=1)]


def pad_square(a):
    h, w = a.shape[:2]
    side = max(int(np.ceil(h / 100.0)) * 100, int(np.ceil(w / 100.0)) * 100)
    top, left = (side - h) // 2, (side - w) // 2
    pad = ((top, side - h - top), (left, side - w - left)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode="constant")


def run_open3d(xyz):
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(edges(xyz).astype(np.float64)))
    plane, _ = pc.segment_plane(distance_threshold=0.004, ransac_n=50, num_iterations=1000)
    flat = xyz.reshape(-1, 3).astype(np.float64)
    dist = np.abs(flat @ plane[:3] + plane[3])
    removed = (dist < 0.005) & np.any(flat != 0, axis=1)
    pl = xyz.copy().reshape(-1, 3)
    pl[dist < 0.005] = 0
    pl = pad_square(pl.reshape(xyz.shape))
    flat = pl.reshape(-1, 3)
    nz = np.nonzero(np.any(flat != 0, axis=1))[0]
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(flat[nz].astype(np.float64)))
    lab = np.array(pc.cluster_dbscan(eps=0.006, min_points=30, print_progress=False))
    labels = np.full(flat.shape[0], -2, dtype=np.int32)
    labels[nz] = lab
    counts = np.bincount(lab[lab >= 0])
    keep = labels == int(np.argmax(counts))
    side = pl.shape[0]
    return (plane, removed.reshape(xyz.shape[:2]).astype(np.uint8),
            labels.reshape(side, side), keep.reshape(side, side).astype(np.uint8))


def main():
    # --big PATH: a one-off measurement set (not a committed fixture: ~6 MB) of 400x400 scans
    # at 0.3 mm spacing (f = 1000), same case names, for the agreement figures at a density
    # closer to MVTec 3D-AD's (Open3D's DBSCAN keeps every neighbour list: memory-bound).
    big = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--big" else None
    os.makedirs(OUT, exist_ok=True)
    o3d.utility.random.seed(1234)
    rng = np.random.default_rng(20261128)
    tensors, meta = {}, {}
    cases = [("a", 90, 120, (0.10, -0.05), False), ("b", 110, 110, (-0.20, 0.15), True),
             ("c", 130, 95, (0.02, 0.30), False)]
    if big:
        cases = [("a", 400, 400, (0.10, -0.05), False), ("b", 380, 420, (-0.20, 0.15), True),
                 ("c", 420, 360, (0.02, 0.30), False)]
    for name, h, w, tilt, band in cases:
        xyz = make_scan(rng, h, w, tilt, band, f=1000.0 if big else 300.0)
        plane, removed, labels, keep = run_open3d(xyz)
        tensors[f"{name}.xyz"] = xyz
        tensors[f"{name}.plane_removed"] = removed
        tensors[f"{name}.labels"] = labels
        tensors[f"{name}.keep"] = keep
        meta[f"{name}.plane"] = " ".join(repr(float(v)) for v in plane)
        ncl = int(labels.max()) + 1
        print(name, xyz.shape, "plane", plane, "removed", int(removed.sum()), "clusters", ncl,
              "noise", int((labels == -1).sum()), "kept", int(keep.sum()))
    # DBSCAN alone on blobs whose density falls through the core threshold: many border
    # points and noise, several clusters (tests numbering and border assignment).
    centres = rng.uniform(-0.05, 0.05, size=(8, 3))
    blobs = np.concatenate([c + rng.normal(scale=0.004, size=(300, 3)) for c in centres])
    blobs = np.concatenate([blobs, rng.uniform(-0.06, 0.06, size=(600, 3))]).astype(np.float32)
    blobs = blobs[rng.permutation(len(blobs))]
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(blobs.astype(np.float64)))
    lab = np.array(pc.cluster_dbscan(eps=0.006, min_points=30, print_progress=False), np.int32)
    tensors["blobs.points"] = blobs
    tensors["blobs.labels"] = lab
    print("blobs", len(blobs), "clusters", lab.max() + 1, "noise", int((lab == -1).sum()),
          "sizes", np.bincount(lab[lab >= 0]))
    st.save(big or os.path.join(OUT, "scans.safetensors"), tensors, meta)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
