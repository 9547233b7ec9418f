"""Exact ground truth of a synthetic camera frame: 3D boxes, velocities, track ids,
2D boxes with visibility, and the per-pixel classes the renderer already produced.

3D boxes are the actor meshes' tight extents grown by ``GT_BOX_MARGIN`` on every side
(annotators box objects loosely too; the margin also covers lidar range noise). Boxes
and velocities are given in ``base_link`` at the camera stamp, and in ``odom``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .render import CameraFrame, Snapshot, _rays, camera_dirs, snapshot
from .trajectory import State
from .world import World

GT_BOX_MARGIN = 0.05


@dataclass
class ObjectTruth:
    track_id: int
    kind: str
    detection_class: str
    center_base: list[float]
    size_lwh: list[float]
    yaw_base: float
    velocity_base: list[float]  # over ground, expressed in base_link axes, m/s
    relative_velocity_base: list[float]  # relative to the ego, in base_link axes, m/s
    center_odom: list[float]
    yaw_odom: float
    velocity_odom: list[float]
    range_m: float
    box_projected: list[float] | None  # 2D rect of the projected tight 3D box (clipped)
    box_full: list[float] | None  # rect of the actor's pixels rendered without occluders
    box_visible: list[float] | None  # rect of its visible pixels
    visible_pixels: int
    unoccluded_pixels: int
    visibility: float
    truncated: bool

    def to_json(self) -> dict:
        return asdict(self)


def box_edge_points(center: np.ndarray, size: np.ndarray, yaw: float, n: int = 12) -> np.ndarray:
    """Points along the 12 edges of an oriented box (distortion bends straight edges)."""
    length, w, h = size
    corners = np.array(
        [
            [sx * length / 2, sy * w / 2, sz * h / 2]
            for sx in (-1, 1)
            for sy in (-1, 1)
            for sz in (-1, 1)
        ]
    )
    edges = [
        (i, j)
        for i in range(8)
        for j in range(i + 1, 8)
        if np.count_nonzero(corners[i] != corners[j]) == 1
    ]
    s = np.linspace(0, 1, n)[:, None]
    pts = np.vstack([corners[i] * (1 - s) + corners[j] * s for i, j in edges])
    c, si = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]])
    return pts @ R.T + center


def project(points_cam: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    px, _ = cv2.projectPoints(points_cam.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    return px.reshape(-1, 2)


def _rect(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _to_base(T_base_world: np.ndarray, v: np.ndarray) -> list[float]:
    return [float(x) for x in T_base_world[:3, :3] @ v]


def camera_truth(
    world: World,
    snap: Snapshot,
    frame: CameraFrame,
    ego: State,
    T_world_base: np.ndarray,
    T_world_cam: np.ndarray,
) -> list[ObjectTruth]:
    rig = world.rig
    K, D = rig.K, np.array(rig.distortion)
    T_base_world = np.linalg.inv(T_world_base)
    T_cam_world = np.linalg.inv(T_world_cam)
    ego_v = np.array([ego.vx, ego.vy, 0.0])
    out = []
    for i, actor in enumerate(world.actors):
        state, pose = snap.actor_states[i], snap.actor_poses[i]
        size = np.asarray(actor.size)
        center_odom = pose[:3, 3] + np.array([0.0, 0.0, size[2] / 2])
        center_base = T_base_world[:3, :3] @ center_odom + T_base_world[:3, 3]
        v_odom = np.array([state.vx, state.vy, 0.0])
        # Relative velocity of the object's centre as seen from the (possibly turning) ego.
        r = center_odom - T_world_base[:3, 3]
        v_ego_at = ego_v + np.array([-ego.yaw_rate * r[1], ego.yaw_rate * r[0], 0.0])
        yaw_base = float(np.arctan2(np.sin(state.yaw - ego.yaw), np.cos(state.yaw - ego.yaw)))
        edge_odom = box_edge_points(center_odom, size, state.yaw)
        edge_cam = edge_odom @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
        front = edge_cam[:, 2] > 0.1
        box_projected, truncated = None, True
        full_mask_pixels, box_full = 0, None
        if front.any():
            uv = project(edge_cam[front], K, D)
            x1, y1 = uv.min(axis=0)
            x2, y2 = uv.max(axis=0)
            truncated = bool(
                not front.all() or x1 < 0 or y1 < 0 or x2 > rig.width or y2 > rig.height
            )
            cx1, cy1 = max(0.0, x1), max(0.0, y1)
            cx2, cy2 = min(float(rig.width), x2), min(float(rig.height), y2)
            if cx2 > cx1 and cy2 > cy1:
                box_projected = [float(cx1), float(cy1), float(cx2), float(cy2)]
                full_mask_pixels, box_full = _unoccluded(
                    world, snap.t, i, T_world_cam, box_projected
                )
        visible = frame.instance == i
        out.append(
            ObjectTruth(
                track_id=actor.track_id,
                kind=actor.kind,
                detection_class=actor.detection_class,
                center_base=[float(x) for x in center_base],
                size_lwh=[float(x) + 2 * GT_BOX_MARGIN for x in size],
                yaw_base=yaw_base,
                velocity_base=_to_base(T_base_world, v_odom),
                relative_velocity_base=_to_base(T_base_world, v_odom - v_ego_at),
                center_odom=[float(x) for x in center_odom],
                yaw_odom=float(state.yaw),
                velocity_odom=[float(x) for x in v_odom],
                range_m=float(np.linalg.norm(center_base[:2])),
                box_projected=box_projected,
                box_full=box_full,
                box_visible=_rect(visible),
                visible_pixels=int(visible.sum()),
                unoccluded_pixels=int(full_mask_pixels),
                visibility=float(visible.sum() / full_mask_pixels) if full_mask_pixels else 0.0,
                truncated=truncated,
            )
        )
    return out


def _unoccluded(
    world: World, t: float, index: int, T_world_cam: np.ndarray, rect: list[float]
) -> tuple[int, list[float] | None]:
    """Render actor ``index`` alone within ``rect`` (grown a little): pixel count and rect."""
    rig = world.rig
    x1 = max(int(np.floor(rect[0])) - 4, 0)
    y1 = max(int(np.floor(rect[1])) - 4, 0)
    x2 = min(int(np.ceil(rect[2])) + 4, rig.width)
    y2 = min(int(np.ceil(rect[3])) + 4, rig.height)
    dirs = camera_dirs(world.rig)[y1:y2, x1:x2]
    alone = snapshot(world, t, only_actor=index)
    hits = alone.cast(_rays(T_world_cam, dirs))
    mask = np.isfinite(hits["t_hit"]).reshape(y2 - y1, x2 - x1)
    box = _rect(mask)
    if box is not None:
        box = [box[0] + x1, box[1] + y1, box[2] + x1, box[3] + y1]
    return int(mask.sum()), box
