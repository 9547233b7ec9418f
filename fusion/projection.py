"""Projection of lidar and radar points into camera pixels through a CameraInfo model.

Points are moved into the camera's optical frame, those behind the camera are dropped,
and the rest go through the distortion model into the raw image (plumb_bob,
rational_polynomial, equidistant) or through R and P into the rectified image. Which one
follows image_geometry's convention (``CameraModel.is_rectified``): an image without
distortion is rectified and projects through P, its baseline term included (KITTI's P2
puts a point ~45/depth px right of ``K [I | 0]``); a distorted one is raw. Points
outside the image are dropped; ``index`` returns the surviving points' rows so callers
can go back to 3D. One compiled pass per cloud (``projection_kernels.project``): it
measures faster than cv2.projectPoints on whole clouds (bench/bench_alignment.py) and
agrees with it to well under 0.01 px.

Polynomial distortion folds far off-axis points back into the image; points whose
undistorted direction lies outside the camera's field of view (found by undistorting
the image border) are rejected first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..ros_pkg.camera_info import CameraModel
from . import projection_kernels as kernels
from .ground import GroundModel


@dataclass(frozen=True)
class Projection:
    uv: np.ndarray  # (M, 2) float pixel coordinates (x right, y down)
    depth: np.ndarray  # (M,) metres along the optical axis
    index: np.ndarray  # (M,) rows of the input points


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points (float64 math, float32 out for float32 in)."""
    out = points @ T[:3, :3].T.astype(points.dtype) + T[:3, 3].astype(points.dtype)
    return out


def _distortion(camera: CameraModel) -> tuple[int, np.ndarray]:
    """A distorted camera's distortion as ``projection_kernels.distort_point`` takes it:
    model and 14 terms."""
    d = np.zeros(14)
    d[: min(camera.D.size, 14)] = camera.D[:14]
    if camera.distortion_model == "equidistant":
        return kernels.EQUIDISTANT, d
    return kernels.POLYNOMIAL, d


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
    linear (or, for a distorted camera, conic) test with ``slack`` in normalised
    coordinates, so every point ``project_points`` (same ``rectified``, no margin) keeps
    is among them. Crop a cloud with it before anything per point."""
    pts = kernels.points_for_kernels(points)
    T = np.asarray(T_cam_points, dtype=np.float64)
    bounds = np.zeros(8)
    bounds[4:] = T[2]  # depth: the optical frame's z
    cone2 = -1.0
    if camera.is_rectified if rectified is None else rectified:
        A = _rectified_matrix(T, camera)  # (u w, v w, w)
        su, sv = slack * float(camera.P[0, 0]), slack * float(camera.P[1, 1])
        bounds[:4] = -su, camera.width + su, -sv, camera.height + sv
    else:
        A = T[:3]  # (x, y, z) in the optical frame
        if camera.is_distorted:
            cone2 = (np.sqrt(_distorted_fov_limit2(camera)) + slack) ** 2
        else:
            x0, x1, y0, y1 = _normalised_bounds(camera.width, camera.height, camera.K.tobytes())
            bounds[:4] = x0 - slack, x1 + slack, y0 - slack, y1 + slack
    return kernels.frustum_rows(pts, np.array(A), 0.9 * float(min_depth), bounds, cone2)


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
    pts = kernels.points_for_kernels(points)
    T = np.array(T_cam_points, dtype=np.float64)  # small matrices: fresh, C order, writable
    rectify = np.zeros((0, 4))
    model, d = kernels.NO_DISTORTION, np.zeros(14)
    fov_limit2 = -1.0
    if rectified:
        rectify = np.hstack([camera.P[:, :3] @ camera.R, camera.P[:, 3:]])
    elif camera.is_distorted:
        model, d = _distortion(camera)
        fov_limit2 = _distorted_fov_limit2(camera)
    bounds = np.array(
        [-margin_px, camera.width + margin_px, -margin_px, camera.height + margin_px], float
    )
    rows, uv, depth = kernels.project(
        pts, T, rectify, np.array(camera.K, np.float64), model, d, fov_limit2,
        float(min_depth), bounds,
    )  # fmt: skip
    return Projection(uv, depth, rows)


HORIZON_BEARINGS = np.linspace(-1.2, 1.2, 25)  # about the optical axis, radians (+-69 deg)
HORIZON_RANGES = (1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)  # multiples of the nearest range


def horizon_band(
    camera: CameraModel,
    T_cam_base: np.ndarray,
    ground: GroundModel | None,
    near_m: float,
    tallest_m: float = 2.0,
) -> tuple[int, int] | None:
    """Image rows (top, bottom) where a road user up to ``tallest_m`` tall standing on the
    ground (``ground``: a ``GroundModel`` in base_link) at ``near_m`` or farther can
    appear: the ground contact and the top of such objects at ranges from ``near_m`` to
    20x it, across the camera's view, projected. None without a ground plane, or when
    none of it is in view. Nearer objects are big: the full frame finds them."""
    if ground is None:
        return None
    T_base_cam = np.linalg.inv(T_cam_base)
    forward = T_base_cam[:3, 2]
    bearings = math.atan2(forward[1], forward[0]) + HORIZON_BEARINGS
    ranges = near_m * np.array(HORIZON_RANGES)
    r, b = np.meshgrid(ranges, bearings)
    x = T_base_cam[0, 3] + (r * np.cos(b)).ravel()
    y = T_base_cam[1, 3] + (r * np.sin(b)).ravel()
    n, d = np.asarray(ground.normal, float), float(ground.d)
    if abs(n[2]) < 1e-6:
        return None
    z = -(n[0] * x + n[1] * y + d) / n[2]
    feet = np.column_stack([x, y, z])
    heads = feet + np.array([0.0, 0.0, tallest_m])
    proj = project_points(np.vstack([feet, heads]), T_cam_base, camera, margin_px=camera.height)
    if len(proj.uv) == 0:
        return None
    inside = (proj.uv[:, 0] >= 0) & (proj.uv[:, 0] <= camera.width)
    if not inside.any():
        return None
    v = proj.uv[inside, 1]
    top, bottom = max(0, math.floor(v.min())), min(camera.height, math.ceil(v.max()))
    return (int(top), int(bottom)) if bottom > top else None
