"""Held-out scores of the project-trained models, through the deployed code path
(ONNX file -> runtime -> Detector/Segmenter), on frames from seeds never trained on.

Detection: mAP at IoU 0.5 over the synthetic classes; boxes under ``MIN_EVAL_HEIGHT``
pixels are "don't care" (neither missed nor false), as KITTI's moderate setting does.
Segmentation: mean IoU over the Cityscapes classes present in the held-out frames.
"""

from __future__ import annotations

import numpy as np

from ...evaluation import DetectionScorer
from ...sim.classes import CITYSCAPES_TRAINIDS, DETECTION_CLASSES
from ..detector import Detector
from ..segmenter import Segmenter

MIN_EVAL_HEIGHT = 16.0  # pixels, in the 640x384 frame


def detection_map(detector: Detector, frames: list[dict[str, np.ndarray]]) -> DetectionScorer:
    scorer = DetectionScorer(DETECTION_CLASSES)
    for f in frames:
        boxes, classes = f["boxes"], f["classes"]
        tall = (boxes[:, 3] - boxes[:, 1]) >= MIN_EVAL_HEIGHT
        result = detector(f["image"])
        scorer.add_frame(
            boxes[tall],
            [DETECTION_CLASSES[c] for c in classes[tall]],
            result.boxes,
            result.labels(),
            result.scores,
            boxes[~tall],
        )
    return scorer


def segmentation_iou(segmenter: Segmenter, frames: list[dict[str, np.ndarray]]) -> dict[str, float]:
    n = len(CITYSCAPES_TRAINIDS)
    inter = np.zeros(n)
    union = np.zeros(n)
    present = np.zeros(n, dtype=bool)
    for f in frames:
        pred = segmenter.segment(f["image"]).labels
        gt = f["semantic"]
        valid = gt < n
        for c in range(n):
            g, p = (gt == c) & valid, (pred == c) & valid
            present[c] |= bool(g.any())
            inter[c] += np.count_nonzero(g & p)
            union[c] += np.count_nonzero(g | p)
    return {CITYSCAPES_TRAINIDS[c]: float(inter[c] / union[c]) for c in range(n) if present[c]}
