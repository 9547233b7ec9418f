"""Moving objects in an older lidar sweep carried to the camera stamp by their tracks.

Under the ``latest`` sync policy a frame fuses the newest sweep already received, up to
``sync.lidar.max_age_ms`` older than the image. Ego motion is taken out when the sweep is
motion-compensated (``fusion.ego_motion``), which assumes a static world: an object moving
at v sits ``v * age`` behind where the image shows it, so its points miss its box (a car at
10 m/s and 80 ms: 0.8 m). Tracks know those velocities. Each moving track claims the
non-ground points around where it was at the sweep's stamp (its footprint, from its class's
size prior, plus a margin); they are moved by its velocity times the age, before the points
are projected and clustered, so the box finds them and the object's centre is at the
camera stamp. Objects that no moving track explains keep the sweep's time, and the tracker
takes their positions as seen ``age`` ago (``Measurement.age_s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .fusion3d import CLASS_SIZE_PRIOR, DEFAULT_PRIOR, Object3D
from .tracking import Track

MIN_SPEED_MPS = 0.3  # slower tracks move their points less than the lidar's noise
MARGIN_M = 0.3  # beyond the footprint's half-diagonal and the track's uncertainty
MAX_MARGIN_M = 2.0  # a coasting track's covariance would claim half the street


@dataclass(frozen=True)
class MovingRegion:
    """Where a moving track was at the sweep's stamp (base_link at the camera stamp), what
    it claims around it, and how far its points are carried."""

    then_xy: np.ndarray  # (2,)
    radius_m: float
    shift: np.ndarray  # (3,) base_link, metres

    @property
    def now_xy(self) -> np.ndarray:
        return self.then_xy + self.shift[:2]


def moving_regions(
    tracks: Sequence[Track],
    tracks_stamp_ns: int | None,
    sweep_stamp_ns: int,
    age_s: float,
    T_track_base: np.ndarray,
) -> list[MovingRegion]:
    """The moving tracks (seen at least twice, speed >= ``MIN_SPEED_MPS``) predicted to the
    sweep's stamp and expressed in base_link at the camera stamp (``T_track_base``)."""
    if age_s <= 0.0 or tracks_stamp_ns is None:
        return []
    R_base_track = T_track_base[:3, :3].T
    T_base_track = np.linalg.inv(T_track_base)
    out = []
    dt = (sweep_stamp_ns - tracks_stamp_ns) / 1e9
    for t in tracks:
        v = np.array([t.x[2], t.x[3], 0.0])
        if t.hits < 2 or float(np.hypot(v[0], v[1])) < MIN_SPEED_MPS:
            continue
        then = np.array([t.x[0] + v[0] * dt, t.x[1] + v[1] * dt, 0.0, 1.0])
        length, width, _ = CLASS_SIZE_PRIOR.get(t.cls, DEFAULT_PRIOR)
        # the footprint's half-diagonal, widened by the track's position uncertainty (2
        # sigma: a camera-only track's is a metre or more), at most MAX_MARGIN_M
        sigma = float(np.sqrt(max(np.trace(t.P[:2, :2]) / 2, 0.0)))
        radius = 0.5 * float(np.hypot(length, width)) + min(MARGIN_M + 2 * sigma, MAX_MARGIN_M)
        out.append(MovingRegion((T_base_track @ then)[:2], radius, R_base_track @ v * age_s))
    return out


def carry_points(points_base: np.ndarray, regions: Sequence[MovingRegion]) -> np.ndarray:
    """``points_base`` (N, 3) with each point inside a region moved by that region's shift
    (a point inside two goes with the nearer centre); a new array, the input untouched."""
    if not regions or not len(points_base):
        return points_base
    xy = points_base[:, :2]
    best = np.full(len(points_base), -1)
    best_d = np.full(len(points_base), np.inf)
    for k, region in enumerate(regions):
        d = np.hypot(xy[:, 0] - region.then_xy[0], xy[:, 1] - region.then_xy[1])
        closer = (d <= region.radius_m) & (d < best_d)
        best[closer], best_d[closer] = k, d[closer]
    if not (best >= 0).any():
        return points_base
    shifts = np.vstack([np.zeros(3), *[r.shift for r in regions]])
    return points_base + shifts[best + 1]


def mark_carried(
    objects: dict[int, Object3D], regions: Sequence[MovingRegion], age_s: float
) -> dict[int, Object3D]:
    """Every lidar object with the sweep's age; ``carried_by_track`` where its centre lies
    in a region's carried footprint (its points were moved to the camera stamp)."""
    out = {}
    for i, obj in objects.items():
        if obj.source != "lidar":
            out[i] = obj
            continue
        carried = any(float(np.hypot(*(obj.center[:2] - r.now_xy))) <= r.radius_m for r in regions)
        out[i] = replace(obj, lidar_age_ms=age_s * 1e3, carried_by_track=carried)
    return out
