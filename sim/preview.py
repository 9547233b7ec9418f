"""Pictures of synthetic frames: the camera image with ground-truth boxes and track ids,
lidar points coloured by range, radar returns, and the semantic labels beside it."""

from __future__ import annotations

import cv2
import numpy as np

from .classes import CLASS_ALBEDO_BGR
from .groundtruth import camera_truth, project
from .render import lidar_scan, mount_pose, planar_pose, radar_scan, render_camera, snapshot
from .world import make_world


def _draw_points(
    image: np.ndarray,
    pts_cam: np.ndarray,
    K: np.ndarray,
    D: np.ndarray,
    colours: np.ndarray,
    radius: int,
) -> None:
    front = pts_cam[:, 2] > 0.5
    if not front.any():
        return
    uv = project(pts_cam[front], K, D)
    h, w = image.shape[:2]
    for (u, v), c in zip(uv, colours[front], strict=True):
        if 0 <= u < w and 0 <= v < h:
            cv2.circle(image, (int(u), int(v)), radius, tuple(int(x) for x in c), -1)


def preview(scenario: str, t: float, seed: int = 0) -> np.ndarray:
    world = make_world(scenario, seed)
    rng = np.random.default_rng(seed)
    rig = world.rig
    ego = world.ego.state(t)
    T_world_base = planar_pose(ego)
    T_world_cam = T_world_base @ mount_pose(rig.camera)
    snap = snapshot(world, t)
    frame = render_camera(world, snap, T_world_cam, rng)
    image = frame.bgr.copy()
    K, D = rig.K, np.array(rig.distortion)
    T_cam_world = np.linalg.inv(T_world_cam)
    T_world_lidar = T_world_base @ mount_pose(rig.lidar)
    scan = lidar_scan(world, snap, T_world_lidar, rng)
    T_cam_lidar = T_cam_world @ T_world_lidar
    pts = scan.xyz @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    depth = np.clip(pts[:, 2] / 60.0, 0, 1)
    colours = cv2.applyColorMap(
        (255 * (1 - depth)).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_JET
    ).reshape(-1, 3)
    _draw_points(image, pts[::2], K, D, colours[::2], 1)
    T_world_radar = T_world_base @ mount_pose(rig.radar)
    radar = radar_scan(world, snap, ego, T_world_base, T_world_radar, rng)
    T_cam_radar = T_cam_world @ T_world_radar
    rpts = radar.xyz @ T_cam_radar[:3, :3].T + T_cam_radar[:3, 3]
    _draw_points(image, rpts, K, D, np.full((len(rpts), 3), 255), 3)
    for obj in camera_truth(world, snap, frame, ego, T_world_base, T_world_cam):
        if obj.box_visible is None or obj.visible_pixels < 30:
            continue
        x1, y1, x2, y2 = (int(v) for v in obj.box_visible)
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 1)
        label = f"{obj.detection_class} #{obj.track_id}"
        cv2.putText(
            image,
            label,
            (x1, max(y1 - 3, 8)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 255, 0),
            1,
            cv2.LINE_AA,
        )
    lut = np.zeros((256, 3), np.uint8)
    for cls, colour in CLASS_ALBEDO_BGR.items():
        lut[cls] = (np.array(colour) * 255).astype(np.uint8)
    labels = lut[frame.semantic]
    return np.hstack([image, labels])
