"""Semantic-consistency filtering: does the segmentation (and lidar, radar) confirm a box?

Each detector class maps to the segmenter classes that are compatible with it (COCO ->
Cityscapes, COCO -> VOC, the synthetic classes -> Cityscapes). A box's semantic score is
the fraction of compatible pixels, weighted towards where the object really is: the
*core* (central half of the width, from 20 % to 95 % of the height: a person's head
sits in background, a car's bottom edge on road) counts 0.7, the whole box 0.3. Boxes are
mapped into the mask's resolution, so segmentation run at another size or stitched from
tiles is judged in the right place. The work is a slice of the uint8 class mask per box
and a few uint8 range tests (bench/bench_fusion.py measures the alternatives).

Geometric evidence joins it: lidar points in the box forming a compact cluster at one
depth that stands in front of its surroundings, and moving radar returns inside the box.
The evidence score is a noisy-OR,
``evidence = semantic + (1 - semantic) * geometric`` with ``geometric = max(lidar,
radar)``; a box is kept when ``evidence >= threshold[class]``, geometry counting only
where the segmentation is weak (few mask pixels in the box, or a near miss). Every box
gets a decision
and a reason: ``consistent``, ``rescued_by_lidar``, ``rescued_by_radar``,
``inconsistent``, ``inconsistent_despite_geometry`` (rejected although lidar or radar
strongly saw an object there), or ``not_judged`` (no segmenter class can judge its
class). Lidar and radar both strong rescue a box whatever the mask area. Supporting
segmenter classes (``SUPPORTING_MAPS``: a person's box on a bicycle) add at a lower
weight to the semantic score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Detector class -> compatible segmenter classes, per segmenter label space.
CLASS_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "cityscapes": {
        "person": ("person", "rider"),
        "bicycle": ("bicycle", "rider"),
        "motorcycle": ("motorcycle", "rider"),
        "car": ("car", "truck", "bus"),
        "truck": ("truck", "bus", "car"),
        "bus": ("bus", "truck", "car", "train"),
        "train": ("train", "bus"),
        "traffic light": ("traffic light", "pole"),
        "stop sign": ("traffic sign", "pole"),
        "cyclist": ("rider", "bicycle"),  # the synthetic detector's class
    },
    "voc": {
        "person": ("person",),
        "bicycle": ("bicycle", "person"),
        "motorcycle": ("motorbike", "person"),
        "car": ("car", "bus"),
        "bus": ("bus", "car"),
        "truck": ("car", "bus"),
        "train": ("train",),
        "cyclist": ("bicycle", "person"),
    },
}

# Classes that stand where a detector class often is without being it: a person standing
# at or riding a bicycle or motorcycle is labelled "bicycle"/"motorcycle" over 78-90 % of
# the box by Cityscapes DeepLab (measured on real nuScenes/KITTI/VoD frames), and the
# rider's bicycle "person". Such a mask is no contradiction: where these classes cover
# ``FilterConfig.support_fraction`` of the box, strong lidar or radar evidence may rescue it
# whatever the mask area. They are not counted as semantic evidence themselves: measured
# on the labelled KITTI object + VoD frames, counting them at weight 0.25 or 0.5 kept 5
# more false boxes (person boxes over bicycle pixels with weak lidar) and no true one.
SUPPORTING_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "cityscapes": {
        "person": ("bicycle", "motorcycle"),
        "bicycle": ("person",),
        "motorcycle": ("person",),
    },
    "voc": {"person": ("bicycle", "motorbike")},
}

CORE_WEIGHT = 0.7


@dataclass(frozen=True)
class FilterConfig:
    label_space: str = "cityscapes"
    default_threshold: float = 0.2
    thresholds: Mapping[str, float] = field(default_factory=dict)  # per detector class
    # Geometry proves that *an* object is there, not which class: it may overrule the
    # segmentation only where the segmentation is weak -- boxes covering few mask pixels
    # (far or thin objects) or near misses (semantic >= rescue_near_miss x threshold).
    rescue_max_mask_pixels: int = 600
    rescue_near_miss: float = 0.5
    # Lidar AND radar both at least this strong rescue a box whatever the mask says (a
    # compact cluster standing out of its surroundings with moving returns in it is a
    # road user: the segmentation's "fence" behind a pedestrian is the error). A box
    # rejected although one of them reached it says so: ``inconsistent_despite_geometry``.
    strong_geometry: float = 0.8
    support_fraction: float = 0.5  # of the box in SUPPORTING_MAPS classes: no contradiction
    core_weight: float = CORE_WEIGHT  # 0: the plain fraction over the whole box
    enabled: bool = True

    def threshold(self, cls: str) -> float:
        return float(self.thresholds.get(cls, self.default_threshold))


@dataclass(frozen=True)
class Decision:
    keep: bool
    reason: str
    semantic: float  # NaN when not judged
    lidar: float
    radar: float
    evidence: float


class ConsistencyFilter:
    def __init__(
        self,
        detector_classes: Sequence[str],
        segmenter_classes: Sequence[str],
        config: FilterConfig | None = None,
    ) -> None:
        self.config = config or FilterConfig()
        mapping = CLASS_MAPS.get(self.config.label_space)
        if mapping is None:
            raise ValueError(
                f"filter.label_space={self.config.label_space!r}: expected one "
                f"of {sorted(CLASS_MAPS)}"
            )
        index = {name: i for i, name in enumerate(segmenter_classes)}
        # Per detector class (None: cannot be judged): a 256-entry lookup table, and the
        # compatible ids as runs (lo, span) -- counting ``(s - lo) <= span`` on uint8 (which
        # wraps below lo) is the fastest per-box test measured (bench/bench_fusion.py).
        supporting = SUPPORTING_MAPS.get(self.config.label_space, {})
        self.luts: list[np.ndarray | None] = []
        self.runs: list[list[tuple[np.uint8, np.uint8]] | None] = []
        # Per detector class: runs of the supporting ids, or None.
        self.support: list[list[tuple[np.uint8, np.uint8]] | None] = []
        for cls in detector_classes:
            compatible = sorted({index[c] for c in mapping.get(cls, ()) if c in index})
            if not compatible:
                self.luts.append(None)
                self.runs.append(None)
                self.support.append(None)
                continue
            names = supporting.get(cls, ())
            extra = sorted({index[c] for c in names if c in index} - set(compatible))
            lut = np.zeros(256, dtype=np.float32)  # compatible pixels only (3D uses it)
            lut[compatible] = 1.0
            self.luts.append(lut)
            self.runs.append(_runs(compatible))
            self.support.append(_runs(extra) if extra else None)
        self.detector_classes = tuple(detector_classes)

    def semantic_scores(
        self,
        boxes: np.ndarray,
        class_ids: np.ndarray,
        labels: np.ndarray,
        image_size: tuple[int, int],
        areas: list[int] | None = None,
        support: list[float] | None = None,
    ) -> np.ndarray:
        """Weighted compatible fraction per box (NaN: class not judged). ``image_size`` is
        (width, height) of the image the boxes are in; ``labels`` may be at another size.
        ``areas``, when given, receives each box's size in mask pixels, ``support`` each
        box's weighted fraction of supporting classes (``SUPPORTING_MAPS``; 0 if none)."""
        mh, mw = labels.shape
        sx, sy = mw / image_size[0], mh / image_size[1]
        scores = np.full(len(boxes), np.nan, dtype=np.float64)
        extra_out = np.zeros(len(boxes))
        if support is not None:
            support.extend([0.0] * len(boxes))
        if len(boxes) == 0:
            return scores
        b = np.asarray(boxes, dtype=np.float64) * [sx, sy, sx, sy]
        x1 = np.clip(np.floor(b[:, 0]), 0, mw - 1).astype(int)
        y1 = np.clip(np.floor(b[:, 1]), 0, mh - 1).astype(int)
        x2 = np.clip(np.ceil(b[:, 2]), x1 + 1, mw).astype(int)
        y2 = np.clip(np.ceil(b[:, 3]), y1 + 1, mh).astype(int)
        w, h = x2 - x1, y2 - y1
        if areas is not None:
            areas.extend((w * h).tolist())
        cx1 = x1 + w // 4
        cx2 = np.maximum(x1 + (3 * w + 3) // 4, cx1 + 1)
        cy1 = y1 + h // 5
        cy2 = np.maximum(y1 + (19 * h + 19) // 20, cy1 + 1)
        wc = self.config.core_weight
        for i, cid in enumerate(np.asarray(class_ids)):
            runs = self.runs[int(cid)]
            if runs is None:
                continue
            patch = labels[y1[i] : y2[i], x1[i] : x2[i]]
            core_win = (
                slice(cy1[i] - y1[i], cy2[i] - y1[i]),
                slice(cx1[i] - x1[i], cx2[i] - x1[i]),
            )
            scores[i] = _weighted_fraction(_compatible(patch, runs), core_win, wc)
            runs_support = self.support[int(cid)]
            if support is not None and runs_support is not None:
                extra_out[i] = _weighted_fraction(_compatible(patch, runs_support), core_win, wc)
        if support is not None:
            support[-len(boxes) :] = extra_out.tolist()
        return scores

    def decide(
        self,
        boxes: np.ndarray,
        class_ids: np.ndarray,
        labels: np.ndarray | None,
        image_size: tuple[int, int],
        lidar: np.ndarray | None = None,
        radar: np.ndarray | None = None,
    ) -> list[Decision]:
        n = len(boxes)
        lidar = np.zeros(n) if lidar is None else np.asarray(lidar, dtype=np.float64)
        radar = np.zeros(n) if radar is None else np.asarray(radar, dtype=np.float64)
        if labels is None or not self.config.enabled:
            return [
                Decision(
                    True, "not_judged", float("nan"), float(lidar[i]), float(radar[i]), float("nan")
                )
                for i in range(n)
            ]
        areas: list[int] = []
        support: list[float] = []
        semantic = self.semantic_scores(boxes, class_ids, labels, image_size, areas, support)
        return [
            judge(
                float(semantic[i]),
                float(lidar[i]),
                float(radar[i]),
                areas[i],
                self.config.threshold(self.detector_classes[int(class_ids[i])]),
                self.config,
                support=support[i],
            )
            for i in range(n)
        ]


def judge(
    semantic: float, lidar: float, radar: float, mask_pixels: int, threshold: float,
    config: FilterConfig, support: float = 0.0,
) -> Decision:  # fmt: skip
    """One box's decision from its evidence (the rule ``decide`` applies to every box, and
    ``mmp calibrate-filter`` to candidate thresholds). Geometry may rescue a box where the
    segmentation is weak (few mask pixels, a near miss), where lidar and radar are both
    strong, or where one is strong and the mask shows a supporting class (a rider)."""
    s, li, ra = semantic, lidar, radar
    if np.isnan(s):
        return Decision(True, "not_judged", float("nan"), li, ra, float("nan"))
    evidence = s + (1.0 - s) * max(li, ra)
    weak_segmentation = (
        mask_pixels < config.rescue_max_mask_pixels or s >= config.rescue_near_miss * threshold
    )
    if s >= threshold:
        reason = "consistent"
    elif evidence >= threshold and (
        weak_segmentation
        or min(li, ra) >= config.strong_geometry
        or (max(li, ra) >= config.strong_geometry and support >= config.support_fraction)
    ):
        reason = "rescued_by_lidar" if li >= ra else "rescued_by_radar"
    elif max(li, ra) >= config.strong_geometry:
        reason = "inconsistent_despite_geometry"
    else:
        reason = "inconsistent"
    return Decision(not reason.startswith("inconsistent"), reason, float(s), li, ra, evidence)


def _runs(ids: list[int]) -> list[tuple[np.uint8, np.uint8]]:
    """Sorted class ids as runs (lo, span) of consecutive ids."""
    runs: list[list[int]] = []
    for c in ids:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return [(np.uint8(lo), np.uint8(hi - lo)) for lo, hi in runs]


def _weighted_fraction(hit: np.ndarray, core: tuple[slice, slice], core_weight: float) -> float:
    """Fraction of the boolean patch set, the core window weighted ``core_weight``."""
    full = np.count_nonzero(hit) / hit.size
    if core_weight <= 0:
        return full
    core_hit = hit[core]  # the core is a window of the same boolean patch
    return (
        core_weight * np.count_nonzero(core_hit) / max(core_hit.size, 1)
        + (1.0 - core_weight) * full
    )


def _compatible(patch: np.ndarray, runs: list[tuple[np.uint8, np.uint8]]) -> np.ndarray:
    """Boolean patch: class id within one of the runs (uint8 subtraction wraps below lo)."""
    lo, span = runs[0]
    hit = (patch - lo) <= span
    for lo, span in runs[1:]:
        hit |= (patch - lo) <= span
    return hit


def radar_evidence(radial_velocity_over_ground: np.ndarray, moving_mps: float = 0.5) -> float:
    """Radar returns in the box: only moving ones (|over-ground radial velocity| above
    ``moving_mps``) are evidence of an object; static returns come from anything."""
    v = radial_velocity_over_ground[np.isfinite(radial_velocity_over_ground)]
    return min(1.0, 0.5 * int(np.count_nonzero(np.abs(v) > moving_mps)))
