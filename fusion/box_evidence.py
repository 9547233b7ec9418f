"""Geometric evidence per 2D box for the consistency filter: lidar and radar.

Lidar: the projected points in the box's core (the central half, 20-95 % of the height)
against a ring just left and right of the box (``consistency.lidar_evidence``). Radar:
the moving returns that project into the box (``consistency.radar_evidence``). Pure
functions over arrays; the filter weighs them against the segmentation.
"""

from __future__ import annotations

import numpy as np

from .consistency import lidar_evidence, radar_evidence
from .projection import Projection


def lidar_box_evidence(
    boxes: np.ndarray, projection: Projection, expected_points: float = 8.0
) -> np.ndarray:
    """(N,) lidar evidence per box (x1, y1, x2, y2) from the frame's projected lidar."""
    out = np.zeros(len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        w, h = x2 - x1, y2 - y1
        # Only the points in the columns of the box and its ring can count.
        cols = projection.columns(x1 - w / 2, x2 + w / 2)
        uv, depth = projection.uv[cols], projection.depth[cols]
        rows = (uv[:, 1] >= y1 + h / 5) & (uv[:, 1] < y2 - h / 20)
        core = rows & (uv[:, 0] >= x1 + w / 4) & (uv[:, 0] < x2 - w / 4)
        ring = rows & (
            ((uv[:, 0] >= x1 - w / 2) & (uv[:, 0] < x1))
            | ((uv[:, 0] >= x2) & (uv[:, 0] < x2 + w / 2))
        )
        out[i] = lidar_evidence(depth[core], depth[ring], expected_points=expected_points)
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
