"""``mmp calibrate-filter``: per-class filter thresholds chosen on labelled recordings.

The consistency filter keeps a box when its evidence reaches its class's threshold
(``fusion.consistency.judge``). Here every detector box of the calibration bags is run
through the pipeline once, its evidence kept (segmentation score, lidar, radar, mask
pixels) and matched against the ground truth (IoU >= 0.5, same class). Then, per class,
each candidate threshold is judged by the same rule, and the one chosen removes the most
false positives while losing at most ``max_recall_loss`` of the class's labelled objects
(the objective: "max FP cut at <= 2 points recall loss"). ``report`` scores thresholds on
other bags: the numbers that count are those on bags not used for calibration.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Parameters, threshold_key
from .evaluation import _gt_class, iou_matrix
from .fusion.consistency import FilterConfig, judge
from .pipeline import Pipeline
from .ros_pkg.bag_io import iter_bag
from .ros_pkg.factory import RosbagsFactory
from .ros_pkg.outputs import detection2d_array_to_arrays
from .ros_pkg.typestore import get_project_typestore

CANDIDATES = np.round(np.arange(0.0, 1.0001, 0.01), 2)


@dataclass(frozen=True)
class BoxEvidence:
    cls: str
    semantic: float
    lidar: float
    radar: float
    mask_pixels: int
    true: bool  # matched a labelled object of its class
    support: float = 0.0  # fraction of supporting mask classes (``judge``'s rider rule)


@dataclass
class Samples:
    boxes: list[BoxEvidence] = field(default_factory=list)
    labelled: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # per class
    frames: int = 0
    config: FilterConfig | None = None  # the pipeline's filter settings (models' thresholds)
    detector: str = ""  # the detector manifest the boxes came from


def _ground_truth(bag: Path, vocabulary: tuple[str, ...]) -> dict[int, tuple[np.ndarray, list]]:
    truth = {}
    for rec in iter_bag(bag, ["/ground_truth/boxes_2d"]):
        gt = detection2d_array_to_arrays(rec.msg)
        stamp = rec.msg.header.stamp.sec * 10**9 + rec.msg.header.stamp.nanosec
        truth[stamp] = (gt.boxes_xyxy, [_gt_class(c, vocabulary) for c in gt.class_ids])
    if not truth:
        raise ValueError(f"{bag}: no /ground_truth/boxes_2d: calibration needs labelled bags")
    return truth


ROAD_USERS = ("person", "bicycle", "motorcycle", "car", "bus", "truck", "train", "cyclist")


def collect(bags: list[Path], params: Parameters) -> Samples:
    """Every detector box of the bags, with its evidence and whether it is a true one."""
    out = Samples()
    for bag in bags:
        pipeline = Pipeline(params, RosbagsFactory(get_project_typestore()))
        pipeline.keep_results = True
        vocabulary = tuple(c for c in pipeline.models.detector.class_names if c in ROAD_USERS)
        truth = _ground_truth(bag, vocabulary)
        for rec in iter_bag(bag):
            if rec.msg is not None:
                pipeline.process(rec.topic, rec.msg)
        pipeline.finish()
        pipeline.close()
        out.config = pipeline.core.filter.config
        out.detector = pipeline.models.detector.manifest.name
        for result in pipeline.results:
            if result.stamp_ns not in truth or result.segmentation is None:
                continue
            out.frames += 1
            gt_boxes, gt_classes = truth[result.stamp_ns]
            _add_frame(out, pipeline, result, gt_boxes, gt_classes)
    return out


def _add_frame(out: Samples, pipeline: Pipeline, result: Any, gt_boxes, gt_classes) -> None:
    det = result.detections
    h, w = result.image.shape[:2]
    areas: list[int] = []
    support: list[float] = []
    semantic = pipeline.core.filter.semantic_scores(
        det.boxes, det.class_ids, result.segmentation.labels, (w, h), areas, support
    )
    classes = det.labels()
    matched = np.zeros(len(det), bool)
    for cls in {c for c in gt_classes if c}:
        g = np.array([b for b, c in zip(gt_boxes, gt_classes, strict=True) if c == cls])
        out.labelled[cls] += len(g)
        mine = sorted((i for i, c in enumerate(classes) if c == cls), key=lambda i: -det.scores[i])
        free = np.ones(len(g), bool)
        for i in mine:  # greedy by score, as the evaluator matches
            ious = iou_matrix(det.boxes[i : i + 1], g)[0] * free
            if ious.size and ious.max() >= 0.5:
                free[int(ious.argmax())] = False
                matched[i] = True
    for i, cls in enumerate(classes):
        d = result.decisions[i]
        ev = BoxEvidence(
            cls, float(semantic[i]), d.lidar, d.radar, areas[i], bool(matched[i]), support[i]
        )
        out.boxes.append(ev)


def _counts(boxes: list[BoxEvidence], threshold: float, config: FilterConfig) -> tuple[int, int]:
    """(true boxes kept, false boxes kept) at ``threshold``."""
    tp = fp = 0
    for b in boxes:
        if judge(b.semantic, b.lidar, b.radar, b.mask_pixels, threshold, config, b.support).keep:
            tp += b.true
            fp += not b.true
    return tp, fp


MIN_TRUE_BOXES = 3  # a class with fewer true boxes is not fitted (see ``fit``)


def fit(
    samples: Samples,
    config: FilterConfig,
    max_recall_loss: float = 0.02,
    min_true: int = MIN_TRUE_BOXES,
) -> dict[str, float]:
    """Per class: the threshold removing the most false boxes while losing at most
    ``max_recall_loss`` of the class's labelled objects (the lowest such on a tie). Only
    classes with at least ``min_true`` true boxes are fitted: without true boxes every
    threshold keeps recall vacuously and the fit would reject the class outright (one
    false truck on KITTI + VoD became a truck threshold of 0.92). The others keep their
    configured threshold (``uncalibrated`` lists them)."""
    chosen = {}
    for cls in sorted({b.cls for b in samples.boxes}):
        boxes = [b for b in samples.boxes if b.cls == cls]
        all_tp = sum(b.true for b in boxes)
        if all_tp < min_true:
            continue
        allowed = max_recall_loss * max(samples.labelled.get(cls, 0), 1)
        best = (0, 0.0)  # (false boxes removed, threshold)
        all_fp = len(boxes) - all_tp
        for t in CANDIDATES:
            tp, fp = _counts(boxes, float(t), config)
            if all_tp - tp <= allowed and all_fp - fp > best[0]:
                best = (all_fp - fp, float(t))
        chosen[cls] = best[1]
    return chosen


def uncalibrated(samples: Samples, thresholds: dict[str, float]) -> list[str]:
    """Classes with boxes in ``samples`` that ``fit`` left to their configured threshold."""
    return sorted({b.cls for b in samples.boxes} - set(thresholds))


def report(
    samples: Samples, thresholds: dict[str, float], config: FilterConfig
) -> dict[str, dict[str, float]]:
    """Per class and overall: true/false boxes before and after, FP cut, recall loss."""
    rows: dict[str, dict[str, float]] = {}
    totals = defaultdict(float)
    for cls in sorted({b.cls for b in samples.boxes}):
        boxes = [b for b in samples.boxes if b.cls == cls]
        tp0, fp0 = sum(b.true for b in boxes), sum(not b.true for b in boxes)
        tp1, fp1 = _counts(boxes, thresholds.get(cls, config.threshold(cls)), config)
        n = samples.labelled.get(cls, 0)
        rows[cls] = {"labelled": n, "tp_before": tp0, "fp_before": fp0, "tp_after": tp1,
                     "fp_after": fp1}  # fmt: skip
        for k, v in rows[cls].items():
            totals[k] += v
    for row in [*rows.values(), totals]:
        row["fp_cut"] = 1 - row["fp_after"] / row["fp_before"] if row["fp_before"] else 0.0
        row["recall_loss"] = (row["tp_before"] - row["tp_after"]) / max(row["labelled"], 1)
    rows["all"] = dict(totals)
    return rows


def manifest_lines(thresholds: dict[str, float], detector: str) -> str:
    """The fit as a segmenter manifest's ``filter_thresholds`` (class names as written)."""
    import yaml

    doc = {"filter_thresholds": dict(sorted(thresholds.items())),
           "filter_thresholds_for": [detector]}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None).rstrip()


def thresholds_yaml(thresholds: dict[str, float]) -> str:
    """A ROS 2 parameter file with the thresholds (``--params`` or a launch config)."""
    import yaml

    doc = {"/**": {"ros__parameters": {"filter": {"threshold": {
        threshold_key(c): float(v) for c, v in sorted(thresholds.items())}}}}}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=True)


def format_report(title: str, rows: dict[str, dict[str, float]]) -> str:
    lines = [
        title,
        "  class        labelled  TP before/after  FP before/after   FP cut  recall loss",
    ]
    for cls, r in rows.items():
        lines.append(
            f"  {cls:12} {int(r['labelled']):8d}  {int(r['tp_before']):6d}/{int(r['tp_after']):<6d}"
            f"  {int(r['fp_before']):6d}/{int(r['fp_after']):<6d}  {r['fp_cut']:7.1%}"
            f"  {r['recall_loss']:10.1%}"
        )
    return "\n".join(lines)


def command(
    bags: list[str],
    out: str,
    report_on: list[str] | None,
    max_recall_loss: float,
    params_path: str | None,
    overrides: dict[str, Any],
    model_dir: str | None,
) -> int:
    """``mmp calibrate-filter``: fit, write the thresholds, report (also on held-out bags)."""
    from .config import load_parameters

    if model_dir:
        overrides = {**overrides, "models.directory": model_dir}
    params = load_parameters(params_path).with_overrides(overrides)
    fit_on = collect([Path(b) for b in bags], params)
    config = fit_on.config or FilterConfig()
    thresholds = fit(fit_on, config, max_recall_loss)
    Path(out).write_text(thresholds_yaml(thresholds))
    print(f"thresholds ({fit_on.frames} frames): {thresholds} -> {out}")
    if skipped := uncalibrated(fit_on, thresholds):
        print(
            f"not fitted (fewer than {MIN_TRUE_BOXES} true boxes; configured thresholds stay):"
            f" {skipped}"
        )
    print("for the segmenter's manifest (thresholds belong to the models fitted with):")
    print(manifest_lines(thresholds, fit_on.detector))
    print(format_report("on the calibration bags:", report(fit_on, thresholds, config)))
    if report_on:
        held_out = collect([Path(b) for b in report_on], params)
        rows = report(held_out, thresholds, config)
        print(format_report(f"on bags NOT used for calibration ({held_out.frames} frames):", rows))
    return 0
