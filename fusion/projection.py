"""Projection of lidar and radar points into camera pixels through a CameraInfo model.

Points are moved into the camera's optical frame, those behind the camera are dropped,
and the rest go through the distortion model into the raw image (plumb_bob,
rational_polynomial, equidistant) or through R and P into the rectified image. Which one
follows image_geometry's convention (``CameraModel.is_rectified``): an image without
distortion is rectified and projects through P, its baseline term included (KITTI's P2
puts a point ~45/depth px right of ``K [I | 0]``); a distorted one is raw. Points
outside the image are dropped; ``index`` returns the surviving points' rows so callers
can go back to 3D. Vectorised numpy: it measures faster than cv2.projectPoints on whole
clouds (bench/bench_alignment.py) and agrees with it to well under 0.01 px.

Polynomial distortion folds far off-axis points back into the image; points whose
undistorted direction lies outside the camera's field of view (found by undistorting
the image border) are rejected first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from ..ros_pkg.camera_info import CameraModel


@dataclass(frozen=True)
class Projection:
    uv: np.ndarray  # (M, 2) float pixel coordinates (x right, y down)
    depth: np.ndarray  # (M,) metres along the optical axis
    index: np.ndarray  # (M,) rows of the input points

    @cached_property
    def _by_u(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.uv[:, 0], kind="stable")
        return order, self.uv[order, 0]

    def columns(self, u_min: float, u_max: float) -> np.ndarray:
        """Rows (ascending, so in projection order) of the points with
        ``u_min <= u < u_max``: per-box work then touches only the points of its
        columns (the sort by u is made once per projection, on first use)."""
        order, u = self._by_u
        lo, hi = np.searchsorted(u, [u_min, u_max], side="left")
        return np.sort(order[lo:hi])


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points (float64 math, float32 out for float32 in)."""
    out = points @ T[:3, :3].T.astype(points.dtype) + T[:3, 3].astype(points.dtype)
    return out


def distort(x: np.ndarray, y: np.ndarray, model: str, D: np.ndarray) -> tuple[np.ndarray, ...]:
    """Normalised undistorted coordinates -> distorted, as OpenCV's models."""
    if model in ("none", "") or D.size == 0:
        return x, y
    if model == "equidistant":
        r = np.sqrt(x * x + y * y)
        theta = np.arctan(r)
        t2 = theta * theta
        k1, k2, k3, k4 = D[:4]
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * scale, y * scale
    d = np.zeros(14)
    d[: D.size] = D
    k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 = d[:12]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xy = x * y
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x) + s1 * r2 + s2 * r2 * r2
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy + s3 * r2 + s4 * r2 * r2
    return xd, yd


@lru_cache(maxsize=16)
def _fov_radius2(width: int, height: int, K_bytes: bytes, D_bytes: bytes, model: str) -> float:
    """Squared normalised radius of the most off-axis image border pixel, undistorted."""
    K = np.frombuffer(K_bytes).reshape(3, 3)
    D = np.frombuffer(D_bytes)
    u = np.concatenate(
        [np.linspace(0, width, 64), np.linspace(0, width, 64), np.zeros(64), np.full(64, width)]
    )
    v = np.concatenate(
        [np.zeros(64), np.full(64, height), np.linspace(0, height, 64), np.linspace(0, height, 64)]
    )
    pts = np.stack([u, v], axis=1).reshape(-1, 1, 2)
    if model == "equidistant":
        und = cv2.fisheye.undistortPoints(pts, K, D[:4])
    else:
        und = cv2.undistortPoints(pts, K, D) if D.size else (pts - K[:2, 2]) / np.diag(K)[:2]
    return float(np.max(np.sum(und.reshape(-1, 2) ** 2, axis=1)))


@lru_cache(maxsize=16)
def _normalised_bounds(width: int, height: int, K_bytes: bytes) -> tuple[float, ...]:
    """Bounding box (x_min, x_max, y_min, y_max) of the image corners in normalised
    undistorted coordinates (the image itself when there is no skew)."""
    K = np.frombuffer(K_bytes).reshape(3, 3)
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float)
    xy = corners @ np.linalg.inv(K).T
    return (
        float(xy[:, 0].min()),
        float(xy[:, 0].max()),
        float(xy[:, 1].min()),
        float(xy[:, 1].max()),
    )


def _rectified_matrix(T_cam_points: np.ndarray, camera: CameraModel) -> np.ndarray:
    """3x4 M with [u w, v w, w] = M [x y z 1] for points in the given frame (P R T)."""
    return camera.P @ np.vstack([camera.R @ T_cam_points[:3], [0.0, 0.0, 0.0, 1.0]])


def frustum_candidates(
    points: np.ndarray,
    T_cam_points: np.ndarray,
    camera: CameraModel,
    min_depth: float = 0.1,
    slack: float = 0.01,
    *,
    rectified: bool | None = None,
) -> np.ndarray:
    """Rows (ascending) of the (N, 3) points that may project into the image: a cheap
    test in the points' own precision (float32 for clouds) with ``slack`` in normalised
    coordinates, far beyond float32 rounding, so every point ``project_points`` (same
    ``rectified``, no margin) keeps is among them. Crop a cloud with it before anything
    per point."""
    dtype = points.dtype if points.dtype in (np.float32, np.float64) else np.float64
    pts = np.asarray(points, dtype=dtype).reshape(-1, 3)
    R, t = T_cam_points[:3, :3].astype(dtype), T_cam_points[:3, 3].astype(dtype)
    # Depth first: most of a spinning lidar's cloud is behind or beside the camera.
    rows = np.flatnonzero(pts @ R[2] + t[2] > 0.9 * min_depth)
    sub = pts[rows]
    if camera.is_rectified if rectified is None else rectified:
        M = _rectified_matrix(T_cam_points, camera).astype(dtype)
        uw, vw, w = sub @ M[0, :3] + M[0, 3], sub @ M[1, :3] + M[1, 3], sub @ M[2, :3] + M[2, 3]
        su, sv = slack * float(camera.P[0, 0]), slack * float(camera.P[1, 1])
        ok = (w > 0) & (uw >= -su * w) & (uw <= (camera.width + su) * w)
        ok &= (vw >= -sv * w) & (vw <= (camera.height + sv) * w)
        return rows[ok]
    x, y, z = sub @ R[0] + t[0], sub @ R[1] + t[1], sub @ R[2] + t[2]
    if camera.is_distorted:
        r2 = _distorted_fov_limit2(camera)
        r = np.sqrt(r2) + slack
        ok = x * x + y * y <= (r * r) * (z * z)
    else:
        x0, x1, y0, y1 = _normalised_bounds(camera.width, camera.height, camera.K.tobytes())
        ok = (x >= (x0 - slack) * z) & (x <= (x1 + slack) * z)
        ok &= (y >= (y0 - slack) * z) & (y <= (y1 + slack) * z)
    return rows[ok]


def _distorted_fov_limit2(camera: CameraModel) -> float:
    """Squared normalised radius beyond which a distorted camera's model is not trusted:
    the image's field of view with a 10 % margin (1.1 squared)."""
    K, D = camera.K.tobytes(), camera.D.tobytes()
    return _fov_radius2(camera.width, camera.height, K, D, camera.distortion_model) * 1.21


def project_points(
    points: np.ndarray,
    T_cam_points: np.ndarray,
    camera: CameraModel,
    *,
    rectified: bool | None = None,
    min_depth: float = 0.1,
    margin_px: float = 0.0,
) -> Projection:
    """Project (N, 3) points given in another frame into the camera image: through R and
    P when ``rectified`` (None: ``camera.is_rectified``), else through K and D. ``depth``
    is along the camera's optical axis either way."""
    if rectified is None:
        rectified = camera.is_rectified
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cam = pts @ T_cam_points[:3, :3].T + T_cam_points[:3, 3]
    front = np.flatnonzero(cam[:, 2] > min_depth)
    cam = cam[front]
    if rectified:
        uvw = cam @ (camera.P[:, :3] @ camera.R).T + camera.P[:, 3]
        keep = uvw[:, 2] > 0
        front, cam, uvw = front[keep], cam[keep], uvw[keep]
        uv = uvw[:, :2] / uvw[:, 2:3]
    else:
        x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
        if camera.is_distorted:
            limit = _distorted_fov_limit2(camera)
            keep = x * x + y * y <= limit
            front, x, y, cam = front[keep], x[keep], y[keep], cam[keep]
            x, y = distort(x, y, camera.distortion_model, camera.D)
        K = camera.K
        uv = np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1)
    inside = (
        (uv[:, 0] >= -margin_px)
        & (uv[:, 0] < camera.width + margin_px)
        & (uv[:, 1] >= -margin_px)
        & (uv[:, 1] < camera.height + margin_px)
    )
    return Projection(uv[inside], cam[inside, 2], front[inside])
