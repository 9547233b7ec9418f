"""A replay run as ``mmp diff`` compares it: per bag, its report, its outputs per frame,
and the frame-level scores every ``mmp eval`` metric is pooled from, so a metric can be
recomputed on any weighting of the frames (a bootstrap replicate).

A run is a replay output folder (``report.json`` + ``output.mcap``) or a batch folder
(one such folder per bag). Metrics are functions of frame weights ``W`` (replicates x
frames; a row of ones is the run itself): detection recall, precision and AP50 before
and after the filter (``evaluation.score_frames``), the median bird's-eye centre error,
CLEAR-MOT MOTA and id switches on synthetic bags (``tracking_eval``), and the replay's
compute time per frame (the sum of the scene's ``latency_ms`` stages). Zone events,
scored per run and not per frame, have point values only.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import ROAD_USER_CLASSES, SYNTHETIC_CLASSES, FrameScores, score_frames
from .ros_pkg.bag_io import iter_bag
from .ros_pkg.outputs import detection2d_array_to_arrays
from .tracking_eval import TrackingScores, evaluate_tracking

KEPT_TOPIC = "/multimodal_perception/detections_2d"
SCENE_TOPIC = "/multimodal_perception/scene"
GT_SCENE_TOPIC = "/ground_truth/scene"


class RunError(ValueError):
    """A folder that is not a replay or batch output, or runs that cannot be compared."""


@dataclass
class FrameOutputs:
    """The kept 2D boxes of one frame, with their track ids, and its compute time."""

    boxes: np.ndarray  # (N, 4) xyxy pixels
    classes: list[str]
    scores: np.ndarray
    track_ids: list[str]
    compute_ms: float | None = None


@dataclass
class BagRun:
    name: str
    out_dir: Path
    report: dict[str, Any]
    outputs: dict[int, FrameOutputs]  # camera stamp -> kept boxes
    scored: dict[int, FrameScores]  # camera stamp -> scores, frames with ground truth
    tracking: TrackingScores | None
    events: dict[str, float] = field(default_factory=dict)  # zone events: tp, fp, fn

    @property
    def failed(self) -> bool:
        return not self.report


def run_folders(path: Path) -> dict[str, Path]:
    """Bag name -> replay folder: the folder itself, or each bag folder of a batch."""
    if (path / "report.json").is_file():
        report = _read_report(path / "report.json")
        bags = report.get("bags") or [path.name]
        return {Path(str(bags[0])).name.removesuffix(".mcap"): path}
    found = {p.name: p for p in sorted(path.iterdir()) if (p / "report.json").is_file()}
    if not found and not (path / "batch.json").is_file():
        raise RunError(f"{path}: neither a replay output (report.json) nor a batch folder")
    if (path / "batch.json").is_file():  # bags of the batch that failed have no report
        for row in _read_report(path / "batch.json").get("bags", []):
            found.setdefault(str(row.get("name")), path / str(row.get("name")))
    return found


def _read_report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict):
        raise RunError(f"{path}: not a JSON object")
    return doc


def load_bag_run(
    name: str, folder: Path, labels: dict[int, Any] | None = None, zones: Path | None = None
) -> BagRun:
    if not (folder / "report.json").is_file():  # a bag the batch could not replay
        return BagRun(name, folder, {}, {}, {}, None)
    report = _read_report(folder / "report.json")
    bag = folder / "output.mcap"
    outputs: dict[int, FrameOutputs] = {}
    synthetic = False
    for rec in iter_bag(bag, [KEPT_TOPIC, SCENE_TOPIC, GT_SCENE_TOPIC]):
        if rec.topic == KEPT_TOPIC:
            det = detection2d_array_to_arrays(rec.msg)
            outputs[det.stamp_ns] = FrameOutputs(det.boxes_xyxy, det.class_ids, det.scores, det.ids)
        elif rec.topic == GT_SCENE_TOPIC:
            synthetic = True
        else:
            scene = json.loads(rec.msg.data)
            if scene.get("stamp_ns") in outputs and scene.get("latency_ms"):
                outputs[scene["stamp_ns"]].compute_ms = float(sum(scene["latency_ms"].values()))
    vocab = SYNTHETIC_CLASSES if synthetic else ROAD_USER_CLASSES
    scored = {f.stamp_ns: f for f in score_frames(bag, vocab, labels=labels)}
    tracking = evaluate_tracking(bag) if synthetic and labels is None else None
    events: dict[str, float] = {}
    if zones is not None:
        from .event_eval import evaluate_bag_events

        rules = evaluate_bag_events(bag, zones)[0].rules.values()
        events = {k: float(sum(getattr(r, k) for r in rules)) for k in ("tp", "fp", "fn")}
    return BagRun(name, folder, report, outputs, scored, tracking, events)


# --- metrics over frame weights -------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    better: int  # +1 higher is better, -1 lower is better
    unit: str
    needs: str  # "gt" | "tracking" | "timing": what a bag must have for it
    compute: Callable[[FrameSet, np.ndarray], np.ndarray]  # (set, W (B, F)) -> (B,)


@dataclass
class FrameSet:
    """Frames (of one bag or pooled over bags) lined up by index for weighting."""

    scored: list[FrameScores | None]  # None: no ground truth there (contributes nothing)
    tracking: list[Any]  # tracking_eval.TrackingFrame or None, the same frames
    compute_ms: np.ndarray  # per frame, NaN where unknown

    def __len__(self) -> int:
        return len(self.scored)

    @staticmethod
    def concat(sets: list[FrameSet]) -> FrameSet:
        return FrameSet(
            [f for s in sets for f in s.scored],
            [t for s in sets for t in s.tracking],
            np.concatenate([s.compute_ms for s in sets]) if sets else np.zeros(0),
        )


def _totals(frames: list[FrameScores | None], which: str) -> tuple[np.ndarray, ...]:
    def total(key: str) -> np.ndarray:
        return np.array(
            [
                sum(getattr(s, key) for s in getattr(f, which).scores.values()) if f else 0
                for f in frames
            ],
            float,
        )

    return total("tp"), total("fp"), total("n_gt")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _recall(which: str) -> Callable[[FrameSet, np.ndarray], np.ndarray]:
    def compute(fs: FrameSet, W: np.ndarray) -> np.ndarray:
        tp, _, n = _totals(fs.scored, which)
        return _ratio(W @ tp, W @ n)

    return compute


def _precision(which: str) -> Callable[[FrameSet, np.ndarray], np.ndarray]:
    def compute(fs: FrameSet, W: np.ndarray) -> np.ndarray:
        tp, fp, _ = _totals(fs.scored, which)
        return _ratio(W @ tp, W @ (tp + fp))

    return compute


def weighted_ap(hits: np.ndarray, frame_of: np.ndarray, n_gt: np.ndarray, W: np.ndarray):
    """All-points interpolated AP (as ``ClassScore.average_precision``) per weighting:
    ``hits`` and ``frame_of`` in descending score order, ``n_gt`` (F,) per frame."""
    total = W @ n_gt  # (B,)
    if hits.size == 0:
        return np.where(total > 0, 0.0, np.nan)
    w = W[:, frame_of]  # (B, E)
    tp = np.cumsum(w * hits, axis=1)
    fp = np.cumsum(w * (1 - hits), axis=1)
    recall = tp / np.where(total > 0, total, 1)[:, None]
    precision = tp / np.maximum(tp + fp, 1e-12)
    ones, zeros = np.ones((W.shape[0], 1)), np.zeros((W.shape[0], 1))
    mrec = np.hstack([zeros, recall, ones])
    mpre = np.hstack([zeros, precision, zeros])
    mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    ap = np.sum((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:], axis=1)
    return np.where(total > 0, ap, np.nan)


def _ap50(which: str) -> Callable[[FrameSet, np.ndarray], np.ndarray]:
    def compute(fs: FrameSet, W: np.ndarray) -> np.ndarray:
        scorers = [getattr(f, which).scores if f else {} for f in fs.scored]
        per_class = []
        for cls in sorted({c for s in scorers for c in s}):
            entries = [
                (score, hit, i)
                for i, s in enumerate(scorers)
                if cls in s
                for score, hit in s[cls].scored
            ]
            n_gt = np.array([s[cls].n_gt if cls in s else 0 for s in scorers], float)
            if not n_gt.sum():
                continue
            order = sorted(range(len(entries)), key=lambda k: -entries[k][0])
            hits = np.array([entries[k][1] for k in order], float)
            frame_of = np.array([entries[k][2] for k in order], int)
            per_class.append(weighted_ap(hits, frame_of, n_gt, W))
        if not per_class:
            return np.full(W.shape[0], np.nan)
        with warnings.catch_warnings():  # an all-NaN replicate is NaN, which is the answer
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.vstack(per_class), axis=0)

    return compute


def _weighted_percentile(values: np.ndarray, frame_of: np.ndarray, W: np.ndarray, q: float):
    out = np.full(W.shape[0], np.nan)
    for b in range(W.shape[0]):
        counts = W[b, frame_of].astype(int)
        if counts.sum():
            out[b] = np.percentile(np.repeat(values, counts), q)
    return out


def _center_error(fs: FrameSet, W: np.ndarray) -> np.ndarray:
    errors = [(o.center_m, i) for i, f in enumerate(fs.scored) if f for o in f.center_errors]
    if not errors:
        return np.full(W.shape[0], np.nan)
    values, frame_of = np.array([e for e, _ in errors]), np.array([i for _, i in errors])
    return _weighted_percentile(values, frame_of, W, 50)


def _tracking_sum(fs: FrameSet, *fields: str) -> np.ndarray:
    return np.array([sum(getattr(t, k) for k in fields) if t else 0 for t in fs.tracking], float)


def _mota(fs: FrameSet, W: np.ndarray) -> np.ndarray:
    errors = _tracking_sum(fs, "misses", "false_positives", "id_switches")
    return 1.0 - (W @ errors) / np.maximum(W @ _tracking_sum(fs, "gt"), 1)


def _id_switches(fs: FrameSet, W: np.ndarray) -> np.ndarray:
    return W @ _tracking_sum(fs, "id_switches")


def _latency(q: float) -> Callable[[FrameSet, np.ndarray], np.ndarray]:
    def compute(fs: FrameSet, W: np.ndarray) -> np.ndarray:
        known = np.flatnonzero(np.isfinite(fs.compute_ms))
        if not known.size:
            return np.full(W.shape[0], np.nan)
        return _weighted_percentile(fs.compute_ms[known], known, W, q)

    return compute


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("recall", +1, "", "gt", _recall("after")),
        Metric("precision", +1, "", "gt", _precision("after")),
        Metric("ap50", +1, "", "gt", _ap50("after")),
        Metric("recall_before", +1, "", "gt", _recall("before")),
        Metric("precision_before", +1, "", "gt", _precision("before")),
        Metric("ap50_before", +1, "", "gt", _ap50("before")),
        Metric("center_error_m", -1, "m", "gt", _center_error),
        Metric("mota", +1, "", "tracking", _mota),
        Metric("id_switches", -1, "", "tracking", _id_switches),
        Metric("latency_p50", -1, "ms", "timing", _latency(50)),
        Metric("latency_p95", -1, "ms", "timing", _latency(95)),
    )
}
# Per run, not per frame: point values, no interval.
RUN_METRICS = {
    "cpu_ms_per_frame": (-1, "ms"),
    "frames_per_s": (+1, "1/s"),
    "messages_dropped": (-1, ""),
    "event_precision": (+1, ""),
    "event_recall": (+1, ""),
}


def run_values(runs: list[BagRun]) -> dict[str, float]:
    """The per-run metrics of bags (pooled: CPU and rate over all frames, drops summed)."""
    ok = [r for r in runs if not r.failed]
    frames = sum(r.report.get("frames", 0) for r in ok)
    cpu = sum(r.report.get("timing", {}).get("cpu_s", np.nan) for r in ok)
    wall = sum(r.report.get("timing", {}).get("elapsed_s", np.nan) for r in ok)
    dropped = sum(
        n
        for r in ok
        for row in r.report.get("inputs", {}).values()
        for reason, n in row.get("dropped", {}).items()
        if reason != "pending"
    )
    out = {
        "cpu_ms_per_frame": cpu * 1e3 / frames if frames else np.nan,
        "frames_per_s": frames / wall if wall else np.nan,
        "messages_dropped": float(dropped),
    }
    scored = [r.events for r in ok if r.events]
    if scored:
        tp, fp, fn = (sum(e[k] for e in scored) for k in ("tp", "fp", "fn"))
        out["event_precision"] = tp / (tp + fp) if tp + fp else np.nan
        out["event_recall"] = tp / (tp + fn) if tp + fn else np.nan
    return out
