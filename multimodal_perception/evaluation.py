"""2D detection scoring: greedy matching at an IoU threshold, precision, recall and AP per
class, with KITTI-style ignore regions (DontCare, too-small or unmapped objects).

Label names of the datasets are mapped to the detector's vocabulary (COCO names for the
real models); a dataset label mapped to ``None`` is not a road user and is ignored.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# KITTI and View-of-Delft labels -> detector class names (COCO vocabulary).
DATASET_TO_COCO: dict[str, str | None] = {
    "Car": "car",
    "Van": "car",
    "Truck": "truck",
    "Tram": "train",
    "Pedestrian": "person",
    "Person_sitting": "person",
    "Cyclist": "bicycle",
    "rider": "person",
    "bicycle": "bicycle",
    "moped_scooter": "motorcycle",
    "motor": "motorcycle",
    "bus": "bus",
    "ride_other": None,
    "ride_uncertain": None,
    "bicycle_rack": None,
    "human_depiction": None,
    "vehicle_other": None,
    "truck": "truck",
    "Misc": None,
    "DontCare": None,
}
ROAD_USER_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
# The synthetic world's detection classes (sim/classes.py ACTOR_KINDS).
SYNTHETIC_CLASSES = ("car", "truck", "bus", "person", "cyclist")
# evaluate_output_bag's inputs by role: the single-camera topics.
OUTPUT_BAG_TOPICS = {
    "gt2d": "/ground_truth/boxes_2d",
    "gt3d": "/ground_truth/objects_3d",
    "kept": "/multimodal_perception/detections_2d",
    "rejected": "/multimodal_perception/rejected_2d",
    "out3d": "/multimodal_perception/objects_3d",
    "scene": "/multimodal_perception/scene",
}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class ClassScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    scored: list[tuple[float, bool]] = field(default_factory=list)  # (score, is_tp)
    n_gt: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / self.n_gt if self.n_gt else float("nan")

    def average_precision(self) -> float:
        """Area under the interpolated precision-recall curve (all points, VOC 2010+)."""
        if not self.n_gt:
            return float("nan")
        ranked = sorted(self.scored, key=lambda s: -s[0])
        hits = np.array([t for _, t in ranked], dtype=float)
        if hits.size == 0:
            return 0.0
        tp = np.cumsum(hits)
        fp = np.cumsum(1 - hits)
        recall = tp / self.n_gt
        precision = tp / np.maximum(tp + fp, 1e-12)
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


class DetectionScorer:
    """Accumulates frames; ``scores`` per class. Detections that match nothing but overlap
    an ignore region (IoU-of-detection area >= 0.5) count neither way."""

    def __init__(self, classes: tuple[str, ...], iou: float = 0.5) -> None:
        self.classes = classes
        self.iou = iou
        self.scores: dict[str, ClassScore] = defaultdict(ClassScore)

    def add_frame(
        self,
        gt_boxes: np.ndarray,
        gt_classes: list[str],
        det_boxes: np.ndarray,
        det_classes: list[str],
        det_scores: np.ndarray,
        ignore_boxes: np.ndarray | None = None,
    ) -> None:
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
        ignore = (
            np.zeros((0, 4)) if ignore_boxes is None else np.asarray(ignore_boxes).reshape(-1, 4)
        )
        for cls in self.classes:
            g = [i for i, c in enumerate(gt_classes) if c == cls]
            d = [i for i, c in enumerate(det_classes) if c == cls]
            d = sorted(d, key=lambda i: -det_scores[i])
            score = self.scores[cls]
            score.n_gt += len(g)
            ious = iou_matrix(det_boxes[d], gt_boxes[g]) if d and g else np.zeros((len(d), len(g)))
            taken = np.zeros(len(g), dtype=bool)
            for row, i in enumerate(d):
                best = -1
                if len(g):
                    cand = np.where(taken, -1.0, ious[row])
                    j = int(cand.argmax())
                    if cand[j] >= self.iou:
                        best = j
                if best >= 0:
                    taken[best] = True
                    score.tp += 1
                    score.scored.append((float(det_scores[i]), True))
                elif not _ignored(det_boxes[i], ignore):
                    score.fp += 1
                    score.scored.append((float(det_scores[i]), False))
            score.fn += int((~taken).sum())

    def merge(self, other: DetectionScorer) -> None:
        """Add another scorer's frames (same classes and IoU) to this one."""
        for cls, score in other.scores.items():
            mine = self.scores[cls]
            mine.tp, mine.fp, mine.fn = mine.tp + score.tp, mine.fp + score.fp, mine.fn + score.fn
            mine.n_gt += score.n_gt
            mine.scored += score.scored

    def table(self) -> list[tuple[str, int, int, int, float, float, float]]:
        rows = []
        for cls in self.classes:
            s = self.scores[cls]
            if s.n_gt or s.fp:
                rows.append((cls, s.n_gt, s.tp, s.fp, s.precision, s.recall, s.average_precision()))
        return rows

    def total_recall(self) -> float:
        n = sum(s.n_gt for s in self.scores.values())
        return sum(s.tp for s in self.scores.values()) / n if n else float("nan")

    def total_precision(self) -> float:
        n = sum(s.tp + s.fp for s in self.scores.values())
        return sum(s.tp for s in self.scores.values()) / n if n else float("nan")

    def mean_ap(self) -> float:
        aps = [s.average_precision() for c, s in self.scores.items() if s.n_gt]
        return float(np.mean(aps)) if aps else float("nan")

    def format(self, title: str) -> str:
        lines = [
            f"{title}",
            f"  {'class':12} {'gt':>4} {'tp':>4} {'fp':>4} {'prec':>6} {'recall':>6} {'AP50':>6}",
        ]
        for cls, n, tp, fp, p, r, ap in self.table():
            lines.append(f"  {cls:12} {n:4d} {tp:4d} {fp:4d} {p:6.2f} {r:6.2f} {ap:6.2f}")
        lines.append(f"  all recall {self.total_recall():.3f}, mAP50 {self.mean_ap():.3f}")
        return "\n".join(lines)


def _ignored(box: np.ndarray, ignore: np.ndarray) -> bool:
    if len(ignore) == 0:
        return False
    x1 = np.maximum(box[0], ignore[:, 0])
    y1 = np.maximum(box[1], ignore[:, 1])
    x2 = np.minimum(box[2], ignore[:, 2])
    y2 = np.minimum(box[3], ignore[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return bool(np.any(inter / area >= 0.5))


def _gt_class(name: str, vocabulary: tuple[str, ...]) -> str | None:
    if name in vocabulary:
        return name
    mapped = DATASET_TO_COCO.get(name)
    if name == "cyclist" and "bicycle" in vocabulary:
        mapped = "bicycle"
    return mapped if mapped in vocabulary else None


class ObjectError(NamedTuple):
    """A ground-truth object matched in 3D (nearest output of its class within 3 m)."""

    cls: str
    center_m: float  # bird's-eye centre error
    gt_index: int
    yaw_deg: float  # heading error modulo 180 degrees (a footprint has no front), in [0, 90]
    fit: str = ""  # how the output's footprint was found (``Object3D.fit``), when published


@dataclass
class BagScores:
    before: DetectionScorer  # every box the detector gave (kept + rejected by the filter)
    after: DetectionScorer  # boxes the filter kept
    center_errors: list[ObjectError]
    frames: int

    def format_3d(self) -> str:
        """Per-class 3D error lines: matched objects, centre error median / p90, yaw error
        median (and the footprint methods used, where the output names them)."""
        lines = []
        for cls in sorted({e.cls for e in self.center_errors}):
            n, median, p90, yaw_median = error_summary(self.center_errors, cls)
            fits = sorted({e.fit for e in self.center_errors if e.cls == cls and e.fit})
            yaw = f"  yaw median {yaw_median:.1f} deg" if math.isfinite(yaw_median) else ""
            lines.append(
                f"  {cls:12} {n:4d} matched  centre median {median:.2f} m  p90 {p90:.2f} m{yaw}"
                + (f"  ({', '.join(fits)})" if fits else "")
            )
        return "\n".join(lines)


FOOTPRINT_FITS = ("l_shape", "min_area_rect")  # the fits that give a heading


def error_summary(errors: Sequence[ObjectError], cls: str) -> tuple[int, float, float, float]:
    """One class's matched objects: count, centre error median and p90 (m), and the yaw
    error median (deg) over the footprint fits that give a heading (a person's yaw is
    its bearing); NaN where there is none."""
    c = [e.center_m for e in errors if e.cls == cls]
    if not c:
        return 0, float("nan"), float("nan"), float("nan")
    yaw = [e.yaw_deg for e in errors if e.cls == cls and e.fit in FOOTPRINT_FITS]
    yaw_median = float(np.median(yaw)) if yaw else float("nan")
    return len(c), float(np.median(c)), float(np.percentile(c, 90)), yaw_median


@dataclass
class FrameScores:
    """One frame's scores: fresh scorers holding only it (merge them to pool frames)."""

    stamp_ns: int
    before: DetectionScorer
    after: DetectionScorer
    center_errors: list[ObjectError]


def _scene_json(msg: Any) -> dict[str, Any] | None:
    try:
        scene = json.loads(msg.data)
    except (ValueError, AttributeError, TypeError):
        return None
    return scene if isinstance(scene, dict) else None


def _fits(scene: dict[str, Any] | None) -> dict[str, str]:
    """Track id -> footprint method, from the frame's scene (older runs name none)."""
    objects = (scene or {}).get("objects") or []
    return {
        str(o["track_id"]): o["fit"]
        for o in objects
        if isinstance(o, dict) and o.get("fit") and o.get("track_id") is not None
    }


def _yaw(d: Any) -> float:
    q = d.bbox.center.orientation
    return 2.0 * math.atan2(q.z, q.w)


def _yaw_error_deg(a: float, b: float) -> float:
    return abs(math.degrees((a - b + math.pi / 2) % math.pi - math.pi / 2))


def evaluate_output_bag(
    path: str | Path | Sequence[str | Path],
    vocabulary: tuple[str, ...] | None = None,
    iou: float = 0.5,
    labels: dict[int, Any] | None = None,
    topics: Mapping[str, str] | None = None,
) -> BagScores:
    """Score a replay's output.mcap against the ground-truth topics it carries, or against
    ``labels`` (camera stamp -> ``labels.FrameLabels``, from ``mmp eval --gt``).

    ``path`` may be several bags (e.g. the input bag with the ground truth and the
    replay's output), joined on header stamps; ``topics`` overrides the topic of a role
    of ``OUTPUT_BAG_TOPICS`` (one camera of a rig reads its own topics)."""
    vocab = vocabulary or ROAD_USER_CLASSES
    before, after = DetectionScorer(vocab, iou), DetectionScorer(vocab, iou)
    errors: list[ObjectError] = []
    frames = 0
    for frame in score_frames(path, vocab, iou, labels, topics):
        frames += 1
        before.merge(frame.before)
        after.merge(frame.after)
        errors += frame.center_errors
    return BagScores(before, after, errors, frames)


def score_frames(
    path: str | Path | Sequence[str | Path],
    vocabulary: tuple[str, ...],
    iou: float = 0.5,
    labels: dict[int, Any] | None = None,
    topics: Mapping[str, str] | None = None,
) -> list[FrameScores]:
    """Every frame with outputs and ground truth scored on its own, in stamp order (the
    unit :func:`evaluate_output_bag` pools and ``mmp diff`` resamples)."""
    from .ros_pkg.bag_io import iter_bag
    from .ros_pkg.outputs import detection2d_array_to_arrays

    by_stamp: dict[int, dict[str, Any]] = defaultdict(dict)
    wanted = {topic: role for role, topic in {**OUTPUT_BAG_TOPICS, **(topics or {})}.items()}
    paths = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    for rec in iter_bag(paths, list(wanted)):
        role = wanted[rec.topic]
        if role == "scene":  # a JSON string: its stamp is inside
            scene = _scene_json(rec.msg)
            if scene is not None and isinstance(scene.get("stamp_ns"), int):
                by_stamp[scene["stamp_ns"]][role] = scene
            continue
        stamp = rec.msg.header.stamp.sec * 1_000_000_000 + rec.msg.header.stamp.nanosec
        by_stamp[stamp][role] = rec.msg
    vocab = vocabulary
    out: list[FrameScores] = []
    for stamp, parts in sorted(by_stamp.items()):
        if "kept" not in parts or (
            stamp not in labels if labels is not None else "gt2d" not in parts
        ):
            continue
        before, after = DetectionScorer(vocab, iou), DetectionScorer(vocab, iou)
        errors: list[ObjectError] = []
        if labels is not None:
            gt_all, names = labels[stamp].boxes, labels[stamp].classes
        else:
            gt = detection2d_array_to_arrays(parts["gt2d"])
            gt_all, names = gt.boxes_xyxy, gt.class_ids
        classes = [_gt_class(c, vocab) for c in names]
        keep = [i for i, c in enumerate(classes) if c]
        ignore = gt_all[[i for i, c in enumerate(classes) if not c]]
        kept = detection2d_array_to_arrays(parts["kept"])
        rej = detection2d_array_to_arrays(parts["rejected"]) if "rejected" in parts else None
        gt_boxes, gt_classes = gt_all[keep], [classes[i] for i in keep]
        after.add_frame(gt_boxes, gt_classes, kept.boxes_xyxy, kept.class_ids, kept.scores, ignore)
        all_boxes = kept.boxes_xyxy if rej is None else np.vstack([kept.boxes_xyxy, rej.boxes_xyxy])
        all_classes = kept.class_ids + ([] if rej is None else rej.class_ids)
        all_scores = kept.scores if rej is None else np.concatenate([kept.scores, rej.scores])
        before.add_frame(gt_boxes, gt_classes, all_boxes, all_classes, all_scores, ignore)
        if "gt3d" in parts and "out3d" in parts:
            fits = _fits(parts.get("scene"))
            found = [
                (
                    d.results[0].hypothesis.class_id,
                    np.array([d.bbox.center.position.x, d.bbox.center.position.y]),
                    _yaw(d),
                    fits.get(d.id, ""),
                )
                for d in parts["out3d"].detections
            ]
            for k, d in enumerate(parts["gt3d"].detections):
                cls = _gt_class(d.results[0].hypothesis.class_id, vocab)
                c = np.array([d.bbox.center.position.x, d.bbox.center.position.y])
                same = [(float(np.linalg.norm(o - c)), yaw, fit)
                        for oc, o, yaw, fit in found if oc == cls]  # fmt: skip
                if cls and same and min(same)[0] < 3.0:
                    dist, yaw, fit = min(same)
                    errors.append(ObjectError(cls, dist, k, _yaw_error_deg(yaw, _yaw(d)), fit))
        out.append(FrameScores(stamp, before, after, errors))
    return out
