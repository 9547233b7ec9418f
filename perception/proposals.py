"""Class-agnostic object proposals: what the segmentation sees that no detector box covers.

Owns :func:`segment_proposals`, pure numpy/OpenCV over a class-id image: connected regions
of the segmentation's thing classes (a traffic sign, a bicycle, a person, ...; never the
surfaces and regions in STUFF), of at least ``min_side`` pixels a side, not mostly
(more than half their area) inside a detector box; the largest first. The open-vocabulary
findings score them as "unknown object" crops.
"""

from __future__ import annotations

import cv2
import numpy as np

STUFF = frozenset(
    ["road", "sidewalk", "building", "wall", "fence", "vegetation", "terrain", "sky",
     "background", "floor", "ground", "ceiling", "pole", "lane", "drivable", "unlabeled"]
)  # fmt: skip
MAX_PROPOSALS = 8


def segment_proposals(
    labels: np.ndarray,
    class_names: tuple[str, ...],
    boxes: np.ndarray,
    min_side: int,
    limit: int = MAX_PROPOSALS,
) -> list[tuple[tuple[int, int, int, int], str]]:
    """(x0, y0, x1, y1) int pixel boxes of the proposals, with their segmentation class."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    found: list[tuple[int, tuple[int, int, int, int], str]] = []
    for cid in np.unique(labels):
        name = class_names[cid] if cid < len(class_names) else "unlabeled"
        if name in STUFF:
            continue
        mask = (labels == cid).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for x, y, w, h, area in stats[1:n]:
            if w < min_side or h < min_side:
                continue
            ix = np.clip(np.minimum(boxes[:, 2], x + w) - np.maximum(boxes[:, 0], x), 0, None)
            iy = np.clip(np.minimum(boxes[:, 3], y + h) - np.maximum(boxes[:, 1], y), 0, None)
            if len(boxes) and float((ix * iy).max()) > 0.5 * w * h:
                continue  # the detector boxed it
            found.append((int(area), (int(x), int(y), int(x + w), int(y + h)), name))
    found.sort(key=lambda f: -f[0])
    return [(box, name) for _, box, name in found[:limit]]
