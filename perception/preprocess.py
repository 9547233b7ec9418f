"""Encoder stage: BGR images to model input tensors, and the mapping back to pixels.

Letterbox (aspect kept, image at the top-left, padded with ``pad_value``, as YOLOX
trains) or plain stretch, then colour order, scaling, mean/std, dtype and layout from the
manifest. :class:`Resize` maps model-input coordinates back to the original image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .manifest import InputSpec


@dataclass(frozen=True)
class Resize:
    """model_input = original * scale + offset (per axis)."""

    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.offset_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.offset_y) / self.scale_y
        return out


def resize_image(bgr: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Resize]:
    h, w = bgr.shape[:2]
    if spec.resize == "stretch":
        interp = cv2.INTER_AREA if w > spec.width else cv2.INTER_LINEAR
        out = cv2.resize(bgr, (spec.width, spec.height), interpolation=interp)
        return out, Resize(spec.width / w, spec.height / h)
    r = min(spec.width / w, spec.height / h)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
    interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
    canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=interp)
    return canvas, Resize(nw / w, nh / h)


def to_tensor(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack already-resized BGR uint8 images into one input tensor (N, ...)."""
    batch = np.stack(images)
    if spec.colour == "RGB":
        batch = batch[..., ::-1]
    if spec.dtype == "uint8":
        out = np.ascontiguousarray(batch)
    else:
        out = batch.astype(np.float32)
        if spec.scale != 1.0:
            out *= np.float32(spec.scale)
        if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
            out = (out - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return out
