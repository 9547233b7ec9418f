"""Decoder stage: raw model outputs to boxes and masks (pure numpy, batched).

Detection families: YOLOX ([N, A, 5 + C], anchor-free grid over strides), FastestDet
([N, 5 + C, H, W], one box per cell) and the common YOLOv8-style export ([N, 4 + C, A],
centre/size in input pixels), all to boxes in model-input pixels; class-aware NMS with
OpenCV. Segmentation: argmax-id outputs, logits (argmax plus softmax confidence), and
TwinLiteNet's two heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class RawDetections:
    boxes: np.ndarray  # (K, 4) x1 y1 x2 y2 in model-input pixels
    scores: np.ndarray  # (K,)
    class_ids: np.ndarray  # (K,) int


def _grid(width: int, height: int, strides: list[int]) -> tuple[np.ndarray, np.ndarray]:
    cells, cell_strides = [], []
    for s in strides:
        gh, gw = height // s, width // s
        yy, xx = np.mgrid[0:gh, 0:gw]
        cells.append(np.stack([xx.ravel(), yy.ravel()], axis=1))
        cell_strides.append(np.full(gh * gw, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def decode_yolox(
    out: np.ndarray, width: int, height: int, params: dict[str, Any]
) -> list[RawDetections]:
    grid, strides = _grid(width, height, list(params.get("strides", (8, 16, 32))))
    if out.shape[1] != len(grid):
        raise ValueError(f"YOLOX output has {out.shape[1]} rows, the grid {len(grid)}")
    results = []
    for pred in out:
        xy = (pred[:, :2] + grid) * strides[:, None]
        wh = np.exp(np.clip(pred[:, 2:4], -10, 10)) * strides[:, None]
        obj, cls = pred[:, 4], pred[:, 5:]
        if not params.get("sigmoid_applied", True):
            obj, cls = _sigmoid(obj), _sigmoid(cls)
        class_ids = cls.argmax(axis=1)
        scores = obj * cls[np.arange(len(cls)), class_ids]
        results.append(
            _threshold_nms(np.concatenate([xy - wh / 2, xy + wh / 2], 1), scores, class_ids, params)
        )
    return results


def decode_fastestdet(
    out: np.ndarray, width: int, height: int, params: dict[str, Any]
) -> list[RawDetections]:
    results = []
    for pred in out:
        c, gh, gw = pred.shape
        p = pred.reshape(c, -1).T
        gy, gx = np.divmod(np.arange(gh * gw), gw)
        obj, cls = p[:, 0], p[:, 5:]
        cx = (gx + np.tanh(p[:, 1])) / gw * width
        cy = (gy + np.tanh(p[:, 2])) / gh * height
        w, h = _sigmoid(p[:, 3]) * width, _sigmoid(p[:, 4]) * height
        class_ids = cls.argmax(axis=1)
        scores = obj**0.6 * cls[np.arange(len(cls)), class_ids] ** 0.4
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        results.append(_threshold_nms(boxes, scores, class_ids, params))
    return results


def decode_yolov8(
    out: np.ndarray, width: int, height: int, params: dict[str, Any]
) -> list[RawDetections]:
    results = []
    for pred in out:
        p = pred.T  # (A, 4 + C)
        cls = p[:, 4:]
        if not params.get("sigmoid_applied", True):
            cls = _sigmoid(cls)
        class_ids = cls.argmax(axis=1)
        scores = cls[np.arange(len(cls)), class_ids]
        cx, cy, w, h = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        results.append(_threshold_nms(boxes, scores, class_ids, params))
    return results


DETECTION_DECODERS = {
    "yolox": decode_yolox,
    "fastestdet": decode_fastestdet,
    "yolov8": decode_yolov8,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _threshold_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, params: dict[str, Any]
) -> RawDetections:
    keep = np.flatnonzero(scores >= float(params.get("score_threshold", 0.3)))
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    idx = class_aware_nms(boxes, scores, class_ids, float(params.get("nms_iou", 0.45)))
    return RawDetections(
        boxes[idx].astype(np.float32),
        scores[idx].astype(np.float32),
        class_ids[idx].astype(np.int64),
    )


def class_aware_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float
) -> np.ndarray:
    """Indices kept by per-class NMS, by descending score (OpenCV's batched NMS)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    idx = cv2.dnn.NMSBoxesBatched(
        xywh.astype(np.float64).tolist(),
        scores.astype(float).tolist(),
        class_ids.astype(int).tolist(),
        0.0,
        iou,
    )
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    return idx[np.argsort(-scores[idx], kind="stable")]


@dataclass(frozen=True)
class RawSegmentation:
    labels: np.ndarray  # (H, W) uint8 class ids at model-input resolution


def decode_argmax(out: np.ndarray) -> list[RawSegmentation]:
    return [RawSegmentation(o.astype(np.uint8)) for o in out.reshape(-1, *out.shape[-2:])]


def decode_logits(out: np.ndarray) -> list[RawSegmentation]:
    # Class ids only: nothing downstream reads a per-pixel confidence, and its softmax
    # cost as much as the argmax.
    return [RawSegmentation(logits.argmax(axis=0).astype(np.uint8)) for logits in out]


def decode_twinlitenet(da: np.ndarray, ll: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: (drivable mask, lane-line mask), uint8 0/1 at model resolution."""
    return [
        (d.argmax(axis=0).astype(np.uint8), lane.argmax(axis=0).astype(np.uint8))
        for d, lane in zip(da, ll, strict=True)
    ]
