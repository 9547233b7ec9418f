"""Overlay pictures: boxes with class and track id, rejected boxes, segmentation tint,
lidar points coloured by depth and radar returns (for the debug image and replay report)."""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np

# Cityscapes colours (RGB in the benchmark's palette), as BGR.
_PALETTE_RGB = [
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
]
PALETTE = np.zeros((256, 3), np.uint8)
PALETTE[: len(_PALETTE_RGB)] = np.array(_PALETTE_RGB, np.uint8)[:, ::-1]


def draw_overlay(
    bgr: np.ndarray,
    scene: dict[str, Any],
    labels: np.ndarray | None = None,
    lidar_uv: np.ndarray | None = None,
    lidar_depth: np.ndarray | None = None,
    radar_uv: np.ndarray | None = None,
    rejected: list[tuple[np.ndarray, str]] | None = None,
) -> np.ndarray:
    """``rejected``: boxes the filter (or de-duplication) dropped, with their reason; drawn
    dashed in grey so a reader sees what was judged, not only what was kept."""
    image = bgr.copy()
    if labels is not None and labels.shape == image.shape[:2]:
        image = cv2.addWeighted(image, 0.65, PALETTE[labels], 0.35, 0.0)
    if lidar_uv is not None and len(lidar_uv):
        depth = np.clip(
            (lidar_depth if lidar_depth is not None else np.zeros(len(lidar_uv))) / 50.0, 0, 1
        )
        colours = cv2.applyColorMap(
            (255 * (1 - depth)).astype(np.uint8)[:, None], cv2.COLORMAP_JET
        )[:, 0]
        for (u, v), c in zip(lidar_uv[::3].astype(int), colours[::3], strict=True):
            cv2.circle(image, (int(u), int(v)), 1, tuple(int(x) for x in c), -1)
    if radar_uv is not None:
        for u, v in radar_uv.astype(int):
            cv2.circle(image, (int(u), int(v)), 4, (255, 255, 255), 1)
    scale = max(image.shape[1] / 1280, 0.4)
    for box, reason in rejected or ():
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        _dashed_rectangle(image, (x1, y1), (x2, y2), (160, 160, 160), max(1, int(scale)))
        cv2.putText(
            image, reason, (x1, min(y2 + 12, image.shape[0] - 2)), cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * scale, (160, 160, 160), 1, cv2.LINE_AA,
        )  # fmt: skip
    for obj in scene["objects"]:
        x1, y1, x2, y2 = (round(v) for v in obj["box_2d"])
        colour = (0, 220, 0) if obj["confirmed"] else (0, 200, 255)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, max(1, int(2 * scale)))
        label = obj["class"] + (f" #{obj['track_id']}" if obj["track_id"] is not None else "")
        if obj.get("range_m") is not None:
            label += f" {obj['range_m']:.0f}m"
        if obj.get("speed_mps"):
            label += f" {obj['speed_mps']:.1f}m/s"
        cv2.putText(
            image,
            label,
            (x1, max(y1 - 4, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45 * scale,
            colour,
            max(1, int(scale)),
            cv2.LINE_AA,
        )
    return image


def _dashed_rectangle(
    image: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], colour, thickness: int
) -> None:
    (x1, y1), (x2, y2) = p1, p2
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    for (ax, ay), (bx, by) in itertools.pairwise(corners):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, 10):  # 6 px dash, 4 px gap
            end = min(start + 6, length)
            f0, f1 = start / max(length, 1), end / max(length, 1)
            a = (round(ax + (bx - ax) * f0), round(ay + (by - ay) * f0))
            b = (round(ax + (bx - ax) * f1), round(ay + (by - ay) * f1))
            cv2.line(image, a, b, colour, thickness, cv2.LINE_AA)


def result_overlay(result: Any) -> np.ndarray:
    """A ``FrameResult``'s image with boxes, tracks, segmentation, lidar and radar drawn,
    rejected boxes dashed with their reason."""
    from .ros_pkg.frame_messages import rejection_ids

    return draw_overlay(
        result.image,
        result.scene,
        result.segmentation.labels if result.segmentation is not None else None,
        result.lidar_uv,
        result.lidar_depth,
        result.radar_uv,
        [
            (result.detections.boxes[i], label)
            for i, label in zip(result.rejected(), rejection_ids(result), strict=True)
        ],
    )
