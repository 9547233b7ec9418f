"""Consistency filter on 100 boxes of a 1242x375 frame against the seed's per-box loop
(slice the class channel of the box, take its mean), and 3D fusion of a 120k-point frame
with 20 boxes. One core."""

from __future__ import annotations

import numpy as np

from multimodal_perception.fusion.consistency import ConsistencyFilter, FilterConfig
from multimodal_perception.fusion.fusion3d import object_from_lidar, prepare_lidar
from multimodal_perception.ros_pkg.camera_info import CameraModel
from multimodal_perception.sim.classes import CITYSCAPES_TRAINIDS as CITYSCAPES

try:
    from .common import median_seconds, report
except ImportError:
    from common import median_seconds, report

DETECTOR = ("person", "car", "truck", "bus", "bicycle")
SEED_CHANNEL = {"person": 11, "car": 13, "truck": 14, "bus": 15, "bicycle": 18}


def _frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = 375, 1242
    labels = rng.integers(0, 19, (h // 8, w // 8)).astype(np.uint8)
    labels = np.kron(labels, np.ones((8, 8), np.uint8))[:h, :w]  # blobs, like a real mask
    x1 = rng.uniform(0, w - 200, 100)
    y1 = rng.uniform(0, h - 150, 100)
    boxes = np.stack([x1, y1, x1 + rng.uniform(15, 200, 100), y1 + rng.uniform(20, 150, 100)], 1)
    return labels, boxes, rng.integers(0, len(DETECTOR), 100)


def main() -> None:
    rng = np.random.default_rng(0)
    labels, boxes, ids = _frame(rng)
    # The seed's input: one probability channel per class (one-hot of the argmax here).
    onehot = (labels[None] == np.arange(19)[:, None, None]).astype(np.float32)
    b = boxes.astype(int)

    def seed() -> list[bool]:
        out = []
        for (x1, y1, x2, y2), c in zip(b, ids, strict=True):
            ch = SEED_CHANNEL[DETECTOR[c]]
            out.append(float(onehot[ch, y1:y2, x1:x2].mean()) >= 0.3)
        return out

    # Configured like the seed: one compatible class, the whole box, one threshold.
    from multimodal_perception.fusion import consistency

    seed_map = {d: (CITYSCAPES[SEED_CHANNEL[d]],) for d in DETECTOR}
    consistency.CLASS_MAPS["seed"] = seed_map
    like_seed = ConsistencyFilter(
        DETECTOR,
        CITYSCAPES,
        FilterConfig(label_space="seed", default_threshold=0.3, core_weight=0.0),
    )
    ours = [d.keep for d in like_seed.decide(b.astype(float), ids, labels, (1242, 375))]
    assert ours == seed(), "configured like the seed, the decisions must agree"
    default = ConsistencyFilter(DETECTOR, CITYSCAPES)
    t_seed = median_seconds(seed, repeat=50)
    report("seed per-box loop, 100 boxes, 1242x375", t_seed)
    t_like = median_seconds(
        lambda: like_seed.decide(b.astype(float), ids, labels, (1242, 375)), repeat=50
    )
    report("filter configured like the seed (same decisions)", t_like, t_seed, "<= 1 ms, <= 1x")
    t_def = median_seconds(lambda: default.decide(boxes, ids, labels, (1242, 375)), repeat=50)
    report("filter, default (core-weighted, compatible sets)", t_def, t_seed, "<= 1 ms")

    def integral() -> np.ndarray:  # the alternative measured: integral images per class set
        sets = {}
        for c in range(len(DETECTOR)):
            lut = default.luts[c]
            sets[c] = np.pad(lut[labels].cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        out = np.empty(len(b))
        for i, ((x1, y1, x2, y2), c) in enumerate(zip(b, ids, strict=True)):
            s = sets[c]
            out[i] = (s[y2, x2] - s[y1, x2] - s[y2, x1] + s[y1, x1]) / ((x2 - x1) * (y2 - y1))
        return out

    report("integral images per compatible set (alternative)", median_seconds(integral, 20), t_seed)

    # 3D fusion: a 120k-point frame, 20 boxes.
    n = 120_000
    pts = np.column_stack([rng.uniform(2, 60, n), rng.uniform(-20, 20, n), rng.uniform(-1.7, 2, n)])
    K = np.array([[720.0, 0, 621], [0, 720, 187], [0, 0, 1]])
    cam = CameraModel(
        1242, 375, K, np.zeros(5), np.eye(3), np.hstack([K, np.zeros((3, 1))]), "plumb_bob"
    )
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    T[:3, 3] = [0, 1.7, 0]
    frame_boxes = boxes[:20]

    def fuse() -> None:
        frame = prepare_lidar(pts, np.eye(4), T, cam)
        for box in frame_boxes:
            object_from_lidar(box, "car", frame)

    report(
        "3D fusion: ground removal + projection + 20 boxes, 120k pts",
        median_seconds(fuse, repeat=5, warmup=1),
    )


if __name__ == "__main__":
    main()
