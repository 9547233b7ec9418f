"""The reference for the fast fusion path: the code it replaced, kept here.

Ground fit with SVD on the whole cloud in float64, projection of every non-ground point
in numpy, open3d's DBSCAN per box, per-box masks over all projected points, the lidar
evidence in numpy. ``use_reference`` patches them into a ``FrameCore``'s path;
``test_fast_path`` and ``bench/bench_pipeline.py`` compare the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import open3d as o3d
import pytest

from multimodal_perception import core as core_mod
from multimodal_perception.fusion import fusion3d, objects, radar_assoc
from multimodal_perception.fusion.fusion3d import GroundModel, LidarFrame
from multimodal_perception.fusion.projection import Projection, _distorted_fov_limit2
from multimodal_perception.ros_pkg.camera_info import CameraModel


def reference_distort(x: np.ndarray, y: np.ndarray, model: str, D: np.ndarray) -> tuple:
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


def reference_project_points(
    points: np.ndarray,
    T_cam_points: np.ndarray,
    camera: CameraModel,
    *,
    rectified: bool | None = None,
    min_depth: float = 0.1,
    margin_px: float = 0.0,
) -> Projection:
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
            keep = x * x + y * y <= _distorted_fov_limit2(camera)
            front, x, y, cam = front[keep], x[keep], y[keep], cam[keep]
            x, y = reference_distort(x, y, camera.distortion_model, camera.D)
        K = camera.K
        uv = np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1)
    inside = (
        (uv[:, 0] >= -margin_px)
        & (uv[:, 0] < camera.width + margin_px)
        & (uv[:, 1] >= -margin_px)
        & (uv[:, 1] < camera.height + margin_px)
    )
    return Projection(uv[inside], cam[inside, 2], front[inside])


def reference_lidar_evidence(
    depths_core: np.ndarray, depths_ring: np.ndarray, expected_points: float, min_points: int = 8
) -> float:
    if depths_core.size < 3:
        return 0.0
    d = np.sort(depths_core)
    right = np.searchsorted(d, d + 1.0, side="right")
    start = int((right - np.arange(d.size)).argmax())
    best = int(right[start] - start)
    mode = float(np.median(d[start : right[start]]))
    compact = best / d.size
    enough = min(1.0, best / max(min_points, 0.25 * expected_points))
    ring = depths_ring[np.isfinite(depths_ring)]
    stands_out = ring.size < 3 or float(np.median(ring)) > mode + 1.0
    return float(compact * enough * (1.0 if stands_out else 0.25))


def reference_box_points(uv, index, depth, points, limits, max_points):
    u, v = uv[:, 0], uv[:, 1]
    box = (u >= limits[0]) & (u < limits[2]) & (v >= limits[1]) & (v < limits[3])
    inside = np.flatnonzero(box)
    if inside.size > max_points:
        inside = inside[:: int(np.ceil(inside.size / max_points))]
    u, v = uv[inside, 0], uv[inside, 1]
    core = (u >= limits[4]) & (u < limits[5]) & (v >= limits[6]) & (v < limits[7])
    return inside, points[index[inside]], depth[inside], core


def reference_fit_ground(points_base: np.ndarray) -> GroundModel | None:
    near = points_base[(np.abs(points_base[:, 0]) < 40.0) & (np.abs(points_base[:, 1]) < 20)]
    if len(near) < 50:
        return None
    low = near[near[:, 2] < np.percentile(near[:, 2], 60)].astype(np.float64)
    rng = np.random.default_rng(0)
    sample = low[rng.choice(len(low), min(len(low), 4000), replace=False)]
    idx = rng.integers(0, len(sample), (128, 3))
    a, b, c = sample[idx[:, 0]], sample[idx[:, 1]], sample[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-6
    normals = normals[ok] / norm[ok, None]
    normals *= np.sign(normals[:, 2:3] + 1e-12)
    horizontal = normals[:, 2] > 0.9
    if not horizontal.any():
        return None
    normals = normals[horizontal]
    d = -np.einsum("ij,ij->i", normals, a[ok][horizontal])
    counts = (np.abs(sample @ normals.T + d) < 0.15).sum(axis=0)
    best = int(np.argmax(counts))
    inliers = low[np.abs(low @ normals[best] + d[best]) < 0.15]
    if len(inliers) < 30:
        return None
    centroid = inliers.mean(axis=0)
    n = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]
    n = n if n[2] > 0 else -n
    if n[2] < 0.9:
        return None
    return GroundModel(n, float(-n @ centroid))


def reference_prepare_lidar(
    points_lidar, T_base_lidar, T_cam_base, camera, ground=True
) -> LidarFrame:
    pts = points_lidar.astype(np.float64) @ T_base_lidar[:3, :3].T + T_base_lidar[:3, 3]
    ground = reference_fit_ground(pts) if ground is True else ground
    if ground is not None:
        pts = pts[ground.height(pts) > 0.2]
    projection = reference_project_points(pts, T_cam_base, camera)
    return LidarFrame(
        pts, projection, ground, float(camera.K[1, 1]),
        np.asarray(T_base_lidar, float)[:2, 3].copy(), camera, np.linalg.inv(T_cam_base),
    )  # fmt: skip


def reference_dbscan(points: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    return np.asarray(cloud.cluster_dbscan(eps=eps, min_points=min_points))


def reference_lidar_box_evidence(boxes: np.ndarray, projection: Projection) -> np.ndarray:
    uv, depth = projection.uv, projection.depth
    out = np.zeros(len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        w, h = x2 - x1, y2 - y1
        rows = (uv[:, 1] >= y1 + h / 5) & (uv[:, 1] < y2 - h / 20)
        core = rows & (uv[:, 0] >= x1 + w / 4) & (uv[:, 0] < x2 - w / 4)
        ring = rows & (
            ((uv[:, 0] >= x1 - w / 2) & (uv[:, 0] < x1))
            | ((uv[:, 0] >= x2) & (uv[:, 0] < x2 + w / 2))
        )
        out[i] = reference_lidar_evidence(depth[core], depth[ring], expected_points=8.0)
    return out


_ORIGINAL_ASSOCIATE_IN_IMAGE = objects.associate_in_image


def use_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_mod, "prepare_lidar", reference_prepare_lidar)
    monkeypatch.setattr(core_mod, "lidar_box_evidence", reference_lidar_box_evidence)
    monkeypatch.setattr(core_mod, "project_points", reference_project_points)
    monkeypatch.setattr(radar_assoc, "project_points", reference_project_points)
    monkeypatch.setattr(fusion3d, "dbscan", reference_dbscan)
    monkeypatch.setattr(fusion3d, "box_points", reference_box_points)

    def assoc(*args: Any) -> Any:  # projects the returns again, as before
        return _ORIGINAL_ASSOCIATE_IN_IMAGE(*args[:7])

    monkeypatch.setattr(objects, "associate_in_image", assoc)
