"""The ground plane under the vehicle, fitted to a lidar sweep.

RANSAC over the lower points near the vehicle, then a least-squares refit, with a seeded
numpy generator (replay gives identical outputs run after run) and the loops over points
compiled (``kernels``). One plane per sweep: a camera rig's cameras share it (a planar
ego motion between their stamps moves points along the plane, not off it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .projection_kernels import points_for_kernels


@dataclass(frozen=True)
class GroundModel:
    """Plane n . p + d = 0 in base_link, n pointing up; None when no plane was found."""

    normal: np.ndarray
    d: float

    def height(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal + self.d


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` of the values as float64 (its default 'linear' method,
    bit for bit; float32 values are partitioned as they are, their order being the same)
    from the two order statistics it interpolates: one partition and a minimum instead of
    numpy's partition at four places (a third of the time on a sweep's heights)."""
    n = values.size
    virtual = (n - 1) * (q / 100)
    below = int(np.floor(virtual))
    if below >= n - 1:  # q = 100, or a single value
        return float(np.max(values))
    part = np.partition(values, below)
    a, b = float(part[below]), float(np.min(part[below + 1 :]))
    t = virtual - below
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def fit_ground(
    points_base: np.ndarray,
    max_range: float = 40.0,
    threshold: float = 0.15,
    hypotheses: int = 128,
    seed: int = 0,
) -> GroundModel | None:
    """Ground plane by RANSAC over the lower points near the vehicle (below the 60th
    percentile of height within ``max_range`` ahead/behind and 20 m aside), then a
    least-squares refit on the inliers. Written with a seeded numpy generator rather than
    open3d's ``segment_plane``, whose parallel sampling is not repeatable even when
    seeded: replay must give identical outputs run after run. The loops over points are
    compiled (``kernels``); the random draws stay numpy's, so the plane is the one the
    numpy version of this function found.

    ``points_base`` may be float32: the selection is decided exactly as in float64; points
    without a finite height are left out. The
    refit's normal is the smallest eigenvector of the inliers' 3x3 scatter (the SVD's last
    right-singular vector, to rounding)."""
    pts = points_for_kernels(points_base)
    z_near = kernels.near_heights(pts, float(max_range), 20.0)
    if len(z_near) < 50:
        return None
    low = kernels.gather_below(pts, float(max_range), 20.0, percentile(z_near, 60))
    if len(low) < 3:  # most heights equal (a sensor sending zeros): no plane to sample
        return None
    rng = np.random.default_rng(seed)
    # Hypotheses are scored on a sample (a plane is decided by thousands of points, not
    # by a hundred thousand); the final refit uses every inlier.
    sample = low[rng.choice(len(low), min(len(low), 4000), replace=False)]
    idx = rng.integers(0, len(sample), (hypotheses, 3))
    normals, d = kernels.plane_hypotheses(sample, idx)
    if not len(normals):
        return None
    best = kernels.best_plane(sample, normals, d, float(threshold))
    count, total, outer = kernels.inlier_moments(
        low, normals[best], float(d[best]), float(threshold)
    )
    if count < 30:
        return None
    centroid = total / count
    n = np.linalg.eigh(outer - np.outer(total, centroid))[1][:, 0]
    n = n if n[2] > 0 else -n
    if n[2] < 0.9:
        return None
    return GroundModel(n, float(-n @ centroid))
