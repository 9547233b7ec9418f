"""Ego-motion compensation of lidar and radar points to the camera's stamp.

A sensor captured at ``t_sensor`` saw the world from where the vehicle was then; the
camera at ``t_camera`` from elsewhere. With odometry in tf (``odom -> base_link`` over
time) the points are re-expressed in the sensor frame as it was at ``t_camera``,
assuming a static world: ``T = T_sensor(t_cam)^-1 . T_odom_sensor(t_sensor)`` via the
fixed frame. Without odometry the points are returned unchanged and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .projection import transform_points
from .transforms import TransformBuffer, TransformError


@dataclass(frozen=True)
class Compensation:
    points: np.ndarray  # (N, 3) in the sensor frame at the target stamp
    applied: bool
    reason: str  # "compensated", or why it was skipped
    shift_m: float  # how far the sensor moved between the two stamps


def compensate(
    points: np.ndarray,
    sensor_frame: str,
    sensor_stamp_ns: int,
    target_stamp_ns: int,
    tf: TransformBuffer,
    fixed_frame: str = "odom",
) -> Compensation:
    if sensor_stamp_ns == target_stamp_ns:
        return Compensation(points, True, "compensated", 0.0)
    try:
        T_fixed_then = tf.lookup(fixed_frame, sensor_frame, sensor_stamp_ns)
        T_fixed_now = tf.lookup(fixed_frame, sensor_frame, target_stamp_ns)
    except TransformError as exc:
        return Compensation(points, False, f"skipped: {exc.reason}: {exc}", 0.0)
    T = np.linalg.inv(T_fixed_now) @ T_fixed_then
    shift = float(np.linalg.norm(T_fixed_now[:3, 3] - T_fixed_then[:3, 3]))
    return Compensation(transform_points(T, points), True, "compensated", shift)
