"""The ground plane under the vehicle, fitted to a lidar sweep.

RANSAC over the lower points near the vehicle, then a least-squares refit, in numpy with a
seeded generator (replay gives identical outputs run after run). One plane per sweep: a
camera rig's cameras share it (a planar ego motion between their stamps moves points
along the plane, not off it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroundModel:
    """Plane n . p + d = 0 in base_link, n pointing up; None when no plane was found."""

    normal: np.ndarray
    d: float

    def height(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal + self.d


def _below(values: np.ndarray, limit: float) -> np.ndarray:
    """``values < limit`` decided as in float64 (float32 values convert exactly; a limit
    that float32 cannot hold is compared in float64)."""
    if values.dtype == np.float32 and float(np.float32(limit)) != limit:
        values = values.astype(np.float64)
    return values < limit


def fit_ground(
    points_base: np.ndarray,
    max_range: float = 40.0,
    threshold: float = 0.15,
    hypotheses: int = 128,
    seed: int = 0,
) -> GroundModel | None:
    """Ground plane by RANSAC over the lower points near the vehicle, then a least-squares
    refit on the inliers. Written in numpy with a seeded generator rather than open3d's
    ``segment_plane``, whose parallel sampling is not repeatable even when seeded: replay
    must give identical outputs run after run.

    ``points_base`` may be float32: the selection is decided exactly as in float64 and
    only the lower near points are converted. The refit's normal is the smallest
    eigenvector of the inliers' 3x3 scatter (the SVD's last right-singular vector, to
    rounding)."""
    x, y = points_base[:, 0], points_base[:, 1]
    near = np.flatnonzero(_below(np.abs(x), max_range) & _below(np.abs(y), 20.0))
    if len(near) < 50:
        return None
    z_near = points_base[near, 2].astype(np.float64)
    low = points_base[near[z_near < np.percentile(z_near, 60)]].astype(np.float64)
    rng = np.random.default_rng(seed)
    # Hypotheses are scored on a sample (a plane is decided by thousands of points, not
    # by a hundred thousand); the final refit uses every inlier.
    sample = low[rng.choice(len(low), min(len(low), 4000), replace=False)]
    idx = rng.integers(0, len(sample), (hypotheses, 3))
    a, b, c = sample[idx[:, 0]], sample[idx[:, 1]], sample[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-6
    normals = normals[ok] / norm[ok, None]
    normals *= np.sign(normals[:, 2:3] + 1e-12)  # pointing up
    horizontal = normals[:, 2] > 0.9
    if not horizontal.any():
        return None
    normals = normals[horizontal]
    d = -np.einsum("ij,ij->i", normals, a[ok][horizontal])
    dist = sample @ normals.T
    dist += d
    np.abs(dist, out=dist)
    counts = np.count_nonzero(dist < threshold, axis=0)
    best = int(np.argmax(counts))
    inliers = low[np.abs(low @ normals[best] + d[best]) < threshold]
    if len(inliers) < 30:
        return None
    total = np.ones(len(inliers)) @ inliers
    centroid = total / len(inliers)
    n = np.linalg.eigh(inliers.T @ inliers - np.outer(total, centroid))[1][:, 0]
    n = n if n[2] > 0 else -n
    if n[2] < 0.9:
        return None
    return GroundModel(n, float(-n @ centroid))
