"""Geometric evidence per 2D box for the consistency filter: lidar and radar.

Lidar: the projected points in the box's core (the central half, 20-95 % of the height)
against a ring just left and right of the box (``consistency.lidar_evidence``). Radar:
the moving returns that project into the box (``consistency.radar_evidence``). Pure
functions over arrays, the lidar's compiled (every box against every projected point, in
one pass per box); the filter weighs them against the segmentation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .consistency import lidar_evidence, radar_evidence
from .projection import Projection


def lidar_box_evidence(
    boxes: np.ndarray, projection: Projection, expected_points: float = 8.0
) -> np.ndarray:
    """(N,) lidar evidence per box (x1, y1, x2, y2) from the frame's projected lidar."""
    b = np.asarray(boxes).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w, h = x2 - x1, y2 - y1
    # Limits in the boxes' own precision (as the per-box arithmetic always was), compared
    # with the float64 pixels exactly: rows, core columns, the ring's left and right.
    limits = np.stack(
        [y1 + h / 5, y2 - h / 20, x1 + w / 4, x2 - w / 4, x1 - w / 2, x1, x2, x2 + w / 2], axis=1
    ).astype(np.float64)
    return _lidar_box_evidence(limits, projection.uv, projection.depth, float(expected_points))


@njit(cache=True, nogil=True)
def _lidar_box_evidence(
    limits: np.ndarray, uv: np.ndarray, depth: np.ndarray, expected_points: float
) -> np.ndarray:
    out = np.zeros(limits.shape[0])
    core = np.empty(depth.size)
    ring = np.empty(depth.size)
    for i in range(limits.shape[0]):
        top, bottom, core_l, core_r = limits[i, 0], limits[i, 1], limits[i, 2], limits[i, 3]
        left, x1, x2, right = limits[i, 4], limits[i, 5], limits[i, 6], limits[i, 7]
        n_core = n_ring = 0
        for k in range(depth.size):
            u, v = uv[k, 0], uv[k, 1]
            if not (v >= top and v < bottom):
                continue
            if u >= core_l and u < core_r:
                core[n_core] = depth[k]
                n_core += 1
            if (u >= left and u < x1) or (u >= x2 and u < right):
                ring[n_ring] = depth[k]
                n_ring += 1
        out[i] = lidar_evidence(core[:n_core], ring[:n_ring], expected_points)
    return out


def radar_box_evidence(
    boxes: np.ndarray, projection: Projection, radial_velocity: np.ndarray
) -> np.ndarray:
    """(N,) radar evidence per box from projected returns and their over-ground radial
    velocity (indexed like the unprojected returns: ``projection.index`` selects)."""
    uv = projection.uv
    v = radial_velocity[projection.index]
    out = np.zeros(len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        inside = (uv[:, 0] >= x1) & (uv[:, 0] < x2) & (uv[:, 1] >= y1) & (uv[:, 1] < y2)
        out[i] = radar_evidence(v[inside])
    return out
