"""Scoring the image-text scorer on labelled real frames: crops, AUC, average precision.

Owns the evaluation sets of ``bench/bench_zero_shot.py`` and the real-weight tests:

- :func:`labelled_crops`: every ground-truth 2D box of labelled bags (``mmp make-bag
  --dataset kitti_object / vod``), with its class group, plus background boxes of the same
  size drawn (seeded) where no labelled box is (IoU < 0.05 with every one, ignore regions
  included);
- :func:`auc` (Mann-Whitney, ties counted half) and :func:`average_precision` (area under
  the precision-recall steps, as retrieval reports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evaluation import iou_matrix
from .ros_pkg.bag_io import iter_bag
from .ros_pkg.image import image_to_bgr8
from .ros_pkg.outputs import detection2d_array_to_arrays

# Dataset class names (KITTI, View-of-Delft) to the groups the goals are stated for.
GROUPS = {
    "car": "vehicle", "truck": "vehicle", "van": "vehicle", "bus": "vehicle", "tram": "vehicle",
    "cyclist": "two-wheeler", "bicycle": "two-wheeler", "rider": "two-wheeler",
    "moped_scooter": "two-wheeler", "motor": "two-wheeler",
    "pedestrian": "pedestrian", "person_sitting": "pedestrian",
}  # fmt: skip
BACKGROUND = "background"
BACKGROUND_PER_BOX = 3


@dataclass(frozen=True)
class LabelledCrop:
    frame: str  # bag name and stamp
    cls: str  # the dataset's class, or "background"
    group: str  # GROUPS' group, "background", or "other" (e.g. Misc, bicycle_rack)
    box: tuple[float, float, float, float]
    image_index: int  # into the images list returned beside the crops

    @property
    def side(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def _background_boxes(
    rng: np.random.Generator, sizes: np.ndarray, taken: np.ndarray, width: int, height: int
) -> list[tuple[float, float, float, float]]:
    out: list[tuple[float, float, float, float]] = []
    for w, h in sizes:
        if w >= width or h >= height:
            continue
        for _ in range(200):  # tries for each wanted box
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            box = np.array([[x0, y0, x0 + w, y0 + h]], np.float32)
            occupied = np.concatenate([taken, np.array(out, np.float32).reshape(-1, 4)])
            if not len(occupied) or iou_matrix(box, occupied).max() < 0.05:
                out.append(tuple(float(v) for v in box[0]))
                break
    return out


def labelled_crops(bags: list[Path], seed: int = 0) -> tuple[list[LabelledCrop], list[np.ndarray]]:
    """Ground-truth and background boxes of the bags, and the images they are in."""
    rng = np.random.default_rng(seed)
    crops: list[LabelledCrop] = []
    images: list[np.ndarray] = []
    for bag in bags:
        truth = {}
        frames = {}
        for rec in iter_bag(bag, ["/ground_truth/boxes_2d", "/camera/image_raw"]):
            stamp = rec.msg.header.stamp.sec * 10**9 + rec.msg.header.stamp.nanosec
            if rec.topic == "/camera/image_raw":
                frames[stamp] = image_to_bgr8(rec.msg)
            else:
                truth[stamp] = detection2d_array_to_arrays(rec.msg)
        for stamp, gt in sorted(truth.items()):
            if stamp not in frames:
                continue
            image = frames[stamp]
            images.append(image)
            where = f"{Path(bag).name}@{stamp}"
            for box, cls in zip(gt.boxes_xyxy, gt.class_ids, strict=True):
                group = GROUPS.get(cls.lower(), "other" if cls != "DontCare" else "ignore")
                if group != "ignore":
                    crops.append(
                        LabelledCrop(where, cls, group, tuple(map(float, box)), len(images) - 1)
                    )
            boxes = np.asarray(gt.boxes_xyxy, np.float32).reshape(-1, 4)
            wanted = [g for g, c in zip(boxes, gt.class_ids, strict=True) if c != "DontCare"]
            sizes = np.repeat([[b[2] - b[0], b[3] - b[1]] for b in wanted], BACKGROUND_PER_BOX, 0)
            h, w = image.shape[:2]
            for box in _background_boxes(rng, sizes.reshape(-1, 2), boxes, w, h):
                crops.append(LabelledCrop(where, BACKGROUND, BACKGROUND, box, len(images) - 1))
    return crops, images


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half; NaN without both."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Mean of the precision at each relevant item, ranked by score (ties broken by
    order); NaN without a relevant item."""
    relevant = np.asarray(relevant, bool)
    if not relevant.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    hits = relevant[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())
