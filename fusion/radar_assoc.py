"""Radar returns to objects: BEV gating around 3D boxes, image gating for camera-only ones.

A return is associated with the object whose bird's-eye box, grown by a gate (0.5 m plus
3 % of range, for the radar's angular spread), contains it; where gates overlap, the box
the return is nearest to (inside beats near), then the nearer centre. Camera-only
objects gate in the image instead (the return projected into the 2D box). Each object
gets the median ego-motion-compensated radial velocity of its returns and the velocity
along the line of sight that it implies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .projection import Projection, project_points


@dataclass(frozen=True)
class RadarObjectEvidence:
    returns: np.ndarray  # indices of the associated returns
    radial_velocity: float  # median over-ground radial velocity, m/s (+ receding); NaN if none
    los_velocity: np.ndarray  # (2,) velocity along the line of sight in base_link (x, y)

    @property
    def count(self) -> int:
        return int(self.returns.size)


def _box_distance(
    points_xy: np.ndarray, centres: np.ndarray, sizes: np.ndarray, yaws: np.ndarray
) -> np.ndarray:
    """(N, M) distance in metres from point n to the footprint of box m (0 inside)."""
    d = points_xy[:, None, :] - centres[None, :, :2]
    c, s = np.cos(yaws)[None, :], np.sin(yaws)[None, :]
    lx = np.abs(c * d[..., 0] + s * d[..., 1]) - sizes[None, :, 0] / 2
    ly = np.abs(-s * d[..., 0] + c * d[..., 1]) - sizes[None, :, 1] / 2
    return np.hypot(np.clip(lx, 0, None), np.clip(ly, 0, None))


def associate(
    radar_base: np.ndarray,
    radial_velocity: np.ndarray,
    centres: np.ndarray,
    sizes: np.ndarray,
    yaws: np.ndarray,
    sensor_xy: np.ndarray,
    gate_m: float = 0.5,
    gate_per_m: float = 0.03,
) -> list[RadarObjectEvidence]:
    """Associate returns (base_link, with over-ground radial velocity) with 3D boxes."""
    n_obj = len(centres)
    if n_obj == 0:
        return []
    owner = np.full(len(radar_base), -1)
    if len(radar_base):
        rng = np.hypot(radar_base[:, 0], radar_base[:, 1])
        gap = _box_distance(radar_base[:, :2], centres, sizes, yaws)
        # Inside a box beats near one; among boxes at the same gap, the nearer centre.
        centre_dist = np.linalg.norm(radar_base[:, None, :2] - centres[None, :, :2], axis=2)
        gate = (gate_m + gate_per_m * rng)[:, None]
        score = np.where(gap <= gate, gap * 100 + centre_dist, np.inf)
        has = np.isfinite(score).any(axis=1)
        owner[has] = score[has].argmin(axis=1)
    return [
        _evidence(np.flatnonzero(owner == m), radar_base, radial_velocity, centres[m], sensor_xy)
        for m in range(n_obj)
    ]


def associate_in_image(
    radar_base: np.ndarray,
    radial_velocity: np.ndarray,
    boxes: np.ndarray,
    centres: np.ndarray,
    T_cam_base: np.ndarray,
    camera,
    sensor_xy: np.ndarray,
    projection: Projection | None = None,
) -> list[RadarObjectEvidence]:
    """Camera-only objects: returns whose projection falls in the 2D box (nearest box).
    ``projection``: the frame's projection of these returns, when already made."""
    proj = projection if projection is not None else project_points(radar_base, T_cam_base, camera)
    owner = np.full(len(radar_base), -1)
    for k, (u, v) in enumerate(proj.uv):
        hits = np.flatnonzero(
            (boxes[:, 0] <= u) & (u < boxes[:, 2]) & (boxes[:, 1] <= v) & (v < boxes[:, 3])
        )
        if hits.size:
            centre_u = (boxes[hits, 0] + boxes[hits, 2]) / 2
            owner[proj.index[k]] = hits[np.argmin(np.abs(centre_u - u))]
    return [
        _evidence(np.flatnonzero(owner == m), radar_base, radial_velocity, centres[m], sensor_xy)
        for m in range(len(boxes))
    ]


def _evidence(
    idx: np.ndarray,
    radar_base: np.ndarray,
    radial_velocity: np.ndarray,
    centre: np.ndarray,
    sensor_xy: np.ndarray,
) -> RadarObjectEvidence:
    if idx.size == 0:
        return RadarObjectEvidence(idx, float("nan"), np.full(2, np.nan))
    vr = radial_velocity[idx]
    vr = vr[np.isfinite(vr)]
    if vr.size == 0:
        return RadarObjectEvidence(idx, float("nan"), np.full(2, np.nan))
    v = float(np.median(vr))
    u = centre[:2] - sensor_xy
    u = u / max(np.linalg.norm(u), 1e-6)
    return RadarObjectEvidence(idx, v, u * v)


def ego_compensate(
    radial_velocity: np.ndarray,
    radar_base: np.ndarray,
    sensor_xy: np.ndarray,
    ego_velocity_xy: np.ndarray,
    ego_yaw_rate: float,
) -> np.ndarray:
    """Over-ground radial velocity from sensor-relative Doppler: add the sensor's own
    velocity (ego velocity plus yaw rate x lever arm) projected on each line of sight."""
    d = radar_base[:, :2] - sensor_xy
    u = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    v_sensor = ego_velocity_xy + ego_yaw_rate * np.array([-sensor_xy[1], sensor_xy[0]])
    return radial_velocity + u @ v_sensor
