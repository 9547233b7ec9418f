"""Alignment in space: one synchronised group of decoded messages -> a ``SyncedFrame``.

Owns every tf lookup of a frame: the camera's pose in base_link, each partner's pose at
its own stamp, ego-motion compensation of lidar and radar to the camera stamp, odometry
(the fixed frame) and the ego velocity from it, and the ego compensation of radar radial
velocities. What cannot be done is named in ``degraded`` (one token each) and the frame
goes on without it: a missing transform never stops a frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..frame import EgoMotion, LidarSweep, PartnerInfo, RadarReturns, SyncedFrame
from ..ros_pkg.camera_info import CameraModel
from .ego_motion import compensate
from .radar_assoc import ego_compensate
from .sync import SyncGroup
from .transforms import TransformError, TransformSource

NS = 1_000_000_000


@dataclass(frozen=True)
class AlignConfig:
    base_frame: str = "base_link"
    fixed_frame: str = "odom"
    motion_compensation: bool = True
    ego_velocity_dt_ns: int = 100_000_000  # finite-difference window for the ego velocity
    anchor: str = "camera"  # the sensor whose messages define frames (sync.anchor)


def ego_motion(
    tf: TransformSource, fixed: str, base: str, stamp_ns: int, dt_ns: int
) -> EgoMotion | None:
    """Ego velocity (base axes) and yaw rate by finite difference of odometry over the
    ``dt_ns`` before ``stamp_ns``; None without odometry."""
    try:
        b = tf.lookup(fixed, base, stamp_ns)
        a = tf.lookup(fixed, base, stamp_ns - dt_ns)
    except TransformError:
        return None
    dt = dt_ns / NS
    v_fixed = (b[:3, 3] - a[:3, 3]) / dt
    dyaw = math.atan2(b[1, 0], b[0, 0]) - math.atan2(a[1, 0], a[0, 0])
    dyaw = (dyaw + math.pi) % (2 * math.pi) - math.pi
    return EgoMotion(b[:3, :3].T @ v_fixed, dyaw / dt)


class NoCameraError(ValueError):
    """A group without a camera image (the anchor is another sensor and no camera message
    was near enough): there is no frame to run."""


def _samples(group: SyncGroup, anchor: str) -> dict[str, tuple[int, Any]]:
    """Sensor -> (stamp, payload) for the anchor and every partner found."""
    out = {anchor: (group.stamp_ns, group.anchor[1])}
    out.update({name: (p.stamp_ns, p.msg[1]) for name, p in group.partners.items()})
    return out


def _partner_points(
    samples: dict[str, tuple[int, Any]],
    sensor: str,
    camera_stamp: int,
    tf: TransformSource,
    config: AlignConfig,
    degraded: list[str],
    notes: list[str],
) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """A sensor's payload, its points moved to the camera stamp (odometry permitting),
    and its pose in base_link at its own stamp; None (flagged) without tf."""
    if sensor not in samples:
        return None
    sensor_stamp, payload = samples[sensor]
    try:
        T_base = tf.lookup(config.base_frame, payload.frame_id, sensor_stamp)
    except TransformError as exc:
        degraded.append(f"no_tf_{sensor}:{exc.reason}")
        notes.append(f"{sensor} header.frame_id={payload.frame_id!r}: {exc}")
        return None
    xyz = payload.xyz
    if config.motion_compensation:
        comp = compensate(xyz, payload.frame_id, sensor_stamp, camera_stamp, tf, config.fixed_frame)
        if comp.applied:
            xyz = comp.points
        else:
            degraded.append(f"{sensor}_not_motion_compensated")
    return payload, xyz, T_base


def align(
    group: SyncGroup,
    tf: TransformSource,
    camera_model: CameraModel | None,
    config: AlignConfig,
) -> SyncedFrame:
    """``group.anchor`` and each partner's ``msg`` are ``(topic, payload)`` pairs: the
    camera payload has ``bgr`` and ``frame_id``; lidar and radar payloads ``xyz`` and
    ``frame_id`` (radar also ``radial_velocity`` and ``over_ground``). Whichever sensor is
    the anchor, the frame's time is the camera's stamp: the image is what every output
    describes, so lidar and radar are moved to it."""
    samples = _samples(group, config.anchor)
    if "camera" not in samples:
        raise NoCameraError(
            f"no camera image within reach of the {config.anchor} at {group.stamp_ns} ns"
        )
    stamp, camera = samples["camera"]
    degraded: list[str] = [f"no_{s}" for s in group.missing]
    notes: list[str] = []
    model = camera_model
    height, width = camera.bgr.shape[:2]
    if model is None:
        degraded.append("no_camera_info")
    elif (model.width, model.height) != (width, height):
        degraded.append("camera_info_size_mismatch")
        notes.append(
            f"CameraInfo width x height = {model.width} x {model.height}, image {width} x {height}"
        )
        model = None
    cam_frame = camera.frame_id or (model.frame_id if model else "")
    T_cam_base = None
    if model is not None:
        try:
            T_cam_base = tf.lookup(cam_frame, config.base_frame, stamp)
        except TransformError as exc:
            degraded.append(f"no_tf_camera:{exc.reason}")
            notes.append(f"camera header.frame_id={cam_frame!r}: {exc}")
    lidar = None
    if T_cam_base is not None:  # lidar serves only through the image
        found = _partner_points(samples, "lidar", stamp, tf, config, degraded, notes)
        if found is not None:
            lidar = LidarSweep(found[1], found[2])
    try:
        T_fixed_base = tf.lookup(config.fixed_frame, config.base_frame, stamp)
    except TransformError:
        T_fixed_base = None
    ego = ego_motion(tf, config.fixed_frame, config.base_frame, stamp, config.ego_velocity_dt_ns)
    radar = None
    found = _partner_points(samples, "radar", stamp, tf, config, degraded, notes)
    if found is not None:
        points, xyz, T = found
        xyz_base = np.asarray(xyz, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]
        sensor_xy = T[:2, 3]
        velocity = points.radial_velocity.astype(np.float64)
        if not points.over_ground:
            if ego is not None:
                velocity = ego_compensate(
                    velocity, xyz_base, sensor_xy, ego.velocity[:2], ego.yaw_rate
                )
            else:
                degraded.append("radar_velocity_relative_to_ego")
        radar = RadarReturns(xyz_base, velocity, sensor_xy)
    if config.anchor == "camera":
        partners = {
            n: PartnerInfo(p.stamp_ns, p.skew_ns, p.extrapolated_ns)
            for n, p in group.partners.items()
        }
    else:  # skews relative to the camera, the frame's time
        partners = {n: PartnerInfo(s, s - stamp) for n, (s, _) in samples.items() if n != "camera"}
    return SyncedFrame(
        stamp_ns=stamp,
        image=camera.bgr,
        camera_frame=cam_frame,
        camera=model,
        T_cam_base=T_cam_base,
        lidar=lidar,
        radar=radar,
        T_fixed_base=T_fixed_base,
        ego=ego,
        partners=partners,
        degraded=tuple(degraded),
        notes=tuple(notes),
    )
