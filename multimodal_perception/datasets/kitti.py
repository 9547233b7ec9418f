"""KITTI-format files: Velodyne .bin scans, object/raw calibration, label_2 boxes.

View-of-Delft uses the same formats (its labels rotate about the lidar -Z axis, which
the conversion below, from KITTI's camera-frame ``ry``, already yields).

Frames (REP 103/105): ``lidar`` is the Velodyne frame (x forward, y left, z up);
``camera_optical`` is the rectified colour camera (z forward, x right, y down) whose
projection is ``K [I | 0]`` -- the stereo baseline term of KITTI's P2 is folded into
the extrinsic so raw and rectified projection agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def read_velodyne_bin(path: str | Path, columns: int = 4) -> np.ndarray:
    """float32 (N, columns) scan; KITTI/VoD lidar has x, y, z, reflectance."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % columns:
        raise ValueError(f"{path}: {raw.size} floats is not a multiple of {columns} columns")
    return raw.reshape(-1, columns)


def _parse_matrix_file(path: str | Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for line in Path(path).read_text().splitlines():
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        key, _, values = line.partition(":")
        numbers = values.split()
        if numbers:
            out[key.strip()] = np.array([float(v) for v in numbers], dtype=np.float64)
    return out


@dataclass(frozen=True)
class CameraLidarCalib:
    """A camera's intrinsics and the lidar-to-camera-optical extrinsic."""

    K: np.ndarray  # (3, 3)
    T_cam_lidar: np.ndarray  # (4, 4): x_cam = T_cam_lidar @ x_lidar
    width: int = 0
    height: int = 0

    def project(self, xyz_lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, 2) and depths (N,) of lidar points (no culling)."""
        cam = xyz_lidar @ self.T_cam_lidar[:3, :3].T + self.T_cam_lidar[:3, 3]
        uvw = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


def _split_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P = K [I | t] -> (K, t): t is the camera offset the stereo rig folds into P."""
    K = P[:, :3].copy()
    t = np.linalg.solve(K, P[:, 3])
    return K, t


def _homogeneous(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R, t
    return out


def object_calib(path: str | Path, camera: str = "P2") -> CameraLidarCalib:
    """KITTI object calib (also VoD's): ``P2``, ``R0_rect``, ``Tr_velo_to_cam``."""
    m = _parse_matrix_file(path)
    K, t = _split_projection(m[camera].reshape(3, 4))
    R0 = m["R0_rect"].reshape(3, 3) if "R0_rect" in m else np.eye(3)
    Tr = np.vstack([m["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]])
    T = _homogeneous(np.eye(3), t) @ _homogeneous(R0, np.zeros(3)) @ Tr
    return CameraLidarCalib(K, T)


def raw_calib(path: str | Path) -> CameraLidarCalib:
    """KITTI raw calib subset: ``R``, ``T`` (velo->cam0), ``R_rect_00``, ``P_rect_02``."""
    m = _parse_matrix_file(path)
    K, t = _split_projection(m["P_rect_02"].reshape(3, 4))
    Tr = _homogeneous(m["R"].reshape(3, 3), m["T"])
    T = _homogeneous(np.eye(3), t) @ _homogeneous(m["R_rect_00"].reshape(3, 3), np.zeros(3)) @ Tr
    return CameraLidarCalib(K, T)


def sensor_to_camera(path: str | Path) -> np.ndarray:
    """``Tr_velo_to_cam`` of a KITTI-style calib as 4x4 (VoD's radar calib uses it for radar)."""
    m = _parse_matrix_file(path)
    return np.vstack([m["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]])


@dataclass(frozen=True)
class Label:
    """One KITTI label_2 line, with the 3D box converted to the lidar frame."""

    cls: str
    truncated: float
    occluded: int
    box2d: np.ndarray  # (4,) x1 y1 x2 y2 pixels
    size_lwh: np.ndarray  # (3,) length (along heading), width, height, metres
    center_lidar: np.ndarray  # (3,) box centre in the lidar frame
    yaw_lidar: float  # heading about lidar +z
    location_cam: np.ndarray  # (3,) bottom centre in the camera frame, as labelled
    ry: float

    @property
    def has_3d(self) -> bool:
        return bool(np.all(self.size_lwh > 0))


def read_labels(path: str | Path, T_cam_lidar: np.ndarray) -> list[Label]:
    """label_2 lines; ``T_cam_lidar`` maps lidar points into the labels' camera frame.

    KITTI's location is the bottom centre in the rectified camera frame and ``ry``
    rotates about camera +y (down); in the lidar frame the heading is ``-ry - pi/2``
    and the centre lies ``h/2`` above the bottom.
    """
    T_lidar_cam = np.linalg.inv(T_cam_lidar)
    labels = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 15:
            continue
        v = [float(x) for x in parts[1:15]]
        h, w, length = v[7], v[8], v[9]
        bottom_cam = np.array(v[10:13])
        bottom_lidar = T_lidar_cam[:3, :3] @ bottom_cam + T_lidar_cam[:3, 3]
        up_lidar = -T_lidar_cam[:3, 1]  # camera -y expressed in the lidar frame
        center = bottom_lidar + up_lidar * h / 2
        ry = v[13]
        # Heading: the camera x axis rotated by ry about camera y, expressed in lidar.
        heading_cam = np.array([np.cos(ry), 0.0, -np.sin(ry)])
        heading_lidar = T_lidar_cam[:3, :3] @ heading_cam
        yaw = float(np.arctan2(heading_lidar[1], heading_lidar[0]))
        labels.append(
            Label(
                parts[0],
                v[0],
                int(v[1]),
                np.array(v[3:7]),
                np.array([length, w, h]),
                center,
                yaw,
                bottom_cam,
                ry,
            )
        )
    return labels


def box_corners(center: np.ndarray, size_lwh: np.ndarray, yaw: float) -> np.ndarray:
    """(8, 3) corners of a box with heading ``yaw`` about +z."""
    length, w, h = size_lwh
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    y = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    z = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * h / 2
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * x - s * y, s * x + c * y, z], axis=1) + center


def points_in_box(
    xyz: np.ndarray, center: np.ndarray, size_lwh: np.ndarray, yaw: float
) -> np.ndarray:
    """Boolean mask of points inside an oriented box."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = xyz[:, :3] - center
    local_x = c * d[:, 0] + s * d[:, 1]
    local_y = -s * d[:, 0] + c * d[:, 1]
    half = np.asarray(size_lwh) / 2
    return (
        (np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1]) & (np.abs(d[:, 2]) <= half[2])
    )
