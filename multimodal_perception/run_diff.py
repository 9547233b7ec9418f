"""``mmp diff RUN_A RUN_B``: what changed between two replays of the same bags, and a gate.

Per bag and pooled over bags, every metric of ``run_metrics.METRICS`` on the frames both
runs published (paired by camera stamp), B minus A, with a paired bootstrap interval: the
same resampled frames score both runs, so the interval is that of the change, not of
either run. Per-run figures (CPU per frame, frames/s, messages dropped, zone events) have
point values. Without ground truth the outputs themselves are compared, frame by frame:
A's and B's kept boxes matched one to one by IoU (Hungarian, IoU >= 0.1): a pair at
IoU >= 0.5 is the same box (``class_changed`` if the class differs), below 0.5 ``moved``;
the rest ``removed`` (A only) or ``added`` (B only); ``id_changes`` counts B's track ids
switching under one A track (id switches with A as the reference).

The gate (``--fail-on "recall:-0.02,ap50:-0.02,latency_p95:+20%"``) bounds each named
metric's pooled change: a negative bound fails a fall below it, a positive bound a rise
above it, ``%`` makes it relative to A; 0 fails any change in the metric's worse direction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .evaluation import iou_matrix
from .run_metrics import METRICS, RUN_METRICS, BagRun, FrameOutputs, FrameSet, RunError, run_values

BOOTSTRAP = 500
SAME_IOU, MATCH_IOU = 0.5, 0.1


@dataclass(frozen=True)
class MetricDelta:
    metric: str
    unit: str
    better: int
    a: float
    b: float
    low: float | None = None  # 95 % bootstrap interval of b - a
    high: float | None = None

    @property
    def delta(self) -> float:
        return self.b - self.a

    @property
    def relative(self) -> float:
        return self.delta / abs(self.a) if self.a else (0.0 if not self.delta else np.inf)

    def to_json(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else round(float(v), 6)

        return {
            "metric": self.metric, "unit": self.unit, "better": self.better,
            "a": num(self.a), "b": num(self.b), "delta": num(self.delta),
            "ci95": [num(self.low), num(self.high)] if self.low is not None else None,
        }  # fmt: skip


@dataclass(frozen=True)
class FrameChange:
    stamp_ns: int
    added: int
    removed: int
    moved: int
    class_changed: int
    id_changes: int

    @property
    def total(self) -> int:
        return self.added + self.removed + self.moved + self.class_changed


@dataclass
class BagDiff:
    name: str
    metrics: list[MetricDelta]
    frames_a: int
    frames_b: int
    paired: int
    changes: list[FrameChange]
    messages: dict[str, dict[str, tuple[int, int]]]  # topic -> outcome -> (a, b)
    problem: str = ""  # a bag that failed in one run

    def change_totals(self) -> dict[str, int]:
        keys = ("added", "removed", "moved", "class_changed", "id_changes")
        totals = {k: sum(getattr(c, k) for c in self.changes) for k in keys}
        totals["frames_changed"] = sum(1 for c in self.changes if c.total)
        return totals


@dataclass
class RunDiff:
    a: Path
    b: Path
    bags: list[BagDiff]
    pooled: list[MetricDelta]
    versions: dict[str, Any]
    only_in: dict[str, list[str]] = field(default_factory=dict)  # "a"/"b" -> bag names

    def pooled_metric(self, name: str) -> MetricDelta | None:
        return next((m for m in self.pooled if m.metric == name), None)


def _frame_set(run: BagRun, stamps: list[int], gt_stamps: set[int], track: set[int]) -> FrameSet:
    tracking = {t.stamp_ns: t for t in run.tracking.per_frame} if run.tracking else {}
    return FrameSet(
        [run.scored[s] if s in gt_stamps else None for s in stamps],
        [tracking[s] if s in track else None for s in stamps],
        np.array([run.outputs[s].compute_ms or np.nan for s in stamps], float),
    )


def paired_sets(a: BagRun, b: BagRun) -> tuple[FrameSet, FrameSet, list[int]]:
    """Both runs' frames on the stamps both published, ground truth where both have it."""
    stamps = sorted(set(a.outputs) & set(b.outputs))
    gt = set(a.scored) & set(b.scored)
    track = set()
    if a.tracking and b.tracking:
        track = {t.stamp_ns for t in a.tracking.per_frame} & {
            t.stamp_ns for t in b.tracking.per_frame
        }
    return _frame_set(a, stamps, gt, track), _frame_set(b, stamps, gt, track), stamps


def available(metric: str, fs: FrameSet) -> bool:
    needs = METRICS[metric].needs
    if needs == "gt":
        return any(f is not None for f in fs.scored)
    if needs == "tracking":
        return any(t is not None for t in fs.tracking)
    return bool(np.isfinite(fs.compute_ms).any())


def compare_metrics(
    a: FrameSet, b: FrameSet, boot: int = BOOTSTRAP, seed: int = 0
) -> list[MetricDelta]:
    n = len(a)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    W = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1.0 / n), size=boot)])
    out = []
    for name, metric in METRICS.items():
        if not (available(name, a) and available(name, b)):
            continue
        va, vb = metric.compute(a, W), metric.compute(b, W)
        deltas = (vb - va)[1:]
        deltas = deltas[np.isfinite(deltas)]
        low, high = (
            (float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5)))
            if deltas.size
            else (None, None)
        )
        out.append(MetricDelta(name, metric.unit, metric.better, va[0], vb[0], low, high))
    return out


def _run_deltas(a: list[BagRun], b: list[BagRun]) -> list[MetricDelta]:
    va, vb = run_values(a), run_values(b)
    return [
        MetricDelta(name, unit, better, va[name], vb[name])
        for name, (better, unit) in RUN_METRICS.items()
        if name in va and name in vb
    ]


def compare_frame(a: FrameOutputs, b: FrameOutputs) -> tuple[list[tuple[int, int, float]], ...]:
    """(pairs (i, j, iou), A's unmatched, B's unmatched) of one frame's kept boxes."""
    iou = iou_matrix(a.boxes, b.boxes)
    pairs: list[tuple[int, int, float]] = []
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        pairs = [(i, j, float(iou[i, j])) for i, j in zip(rows, cols, strict=True)]
        pairs = [p for p in pairs if p[2] >= MATCH_IOU]
    removed = [i for i in range(len(a.classes)) if i not in {p[0] for p in pairs}]
    added = [j for j in range(len(b.classes)) if j not in {p[1] for p in pairs}]
    return pairs, removed, added


def output_changes(a: BagRun, b: BagRun, stamps: list[int]) -> list[FrameChange]:
    changes, b_id_of = [], {}
    for stamp in stamps:
        fa, fb = a.outputs[stamp], b.outputs[stamp]
        pairs, removed, added = compare_frame(fa, fb)
        moved = sum(1 for _, _, v in pairs if v < SAME_IOU)
        same = [(i, j) for i, j, v in pairs if v >= SAME_IOU]
        class_changed = sum(1 for i, j in same if fa.classes[i] != fb.classes[j])
        id_changes = 0
        for i, j in same:
            ida, idb = fa.track_ids[i], fb.track_ids[j]
            if ida and idb:
                id_changes += int(ida in b_id_of and b_id_of[ida] != idb)
                b_id_of[ida] = idb
        changes.append(
            FrameChange(stamp, len(added), len(removed), moved, class_changed, id_changes)
        )
    return changes


def _messages(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, tuple[int, int]]]:
    out: dict[str, dict[str, tuple[int, int]]] = {}
    ia, ib = a.get("inputs", {}), b.get("inputs", {})
    for topic in sorted(set(ia) | set(ib)):
        ra, rb = ia.get(topic, {}), ib.get(topic, {})
        row = {
            "in": (ra.get("in", 0), rb.get("in", 0)),
            "used": (ra.get("used", 0), rb.get("used", 0)),
        }
        for reason in sorted(set(ra.get("dropped", {})) | set(rb.get("dropped", {}))):
            row[f"dropped.{reason}"] = (
                ra.get("dropped", {}).get(reason, 0),
                rb.get("dropped", {}).get(reason, 0),
            )
        out[topic] = row
    return out


def diff_bag(a: BagRun, b: BagRun, boot: int = BOOTSTRAP) -> tuple[BagDiff, FrameSet, FrameSet]:
    if a.failed or b.failed:
        which = " and ".join(w for w, r in (("A", a), ("B", b)) if r.failed)
        empty = FrameSet([], [], np.zeros(0))
        return BagDiff(a.name, [], 0, 0, 0, [], {}, f"no replay in run {which}"), empty, empty
    sa, sb, stamps = paired_sets(a, b)
    metrics = compare_metrics(sa, sb, boot) + _run_deltas([a], [b])
    diff = BagDiff(
        a.name, metrics, len(a.outputs), len(b.outputs), len(stamps),
        output_changes(a, b, stamps), _messages(a.report, b.report),
    )  # fmt: skip
    return diff, sa, sb


def diff_runs(
    a_path: Path, a: dict[str, BagRun], b_path: Path, b: dict[str, BagRun], boot: int = BOOTSTRAP
) -> RunDiff:
    common = [name for name in a if name in b]
    if not common:
        raise RunError(
            f"{a_path} and {b_path} share no bag (A: {sorted(a)}, B: {sorted(b)}): "
            "diff compares replays of the same bags"
        )
    bags, sets_a, sets_b = [], [], []
    for name in common:
        diff, sa, sb = diff_bag(a[name], b[name], boot)
        bags.append(diff)
        sets_a.append(sa), sets_b.append(sb)
    pooled = compare_metrics(FrameSet.concat(sets_a), FrameSet.concat(sets_b), boot)
    pooled += _run_deltas([a[n] for n in common], [b[n] for n in common])
    first = {k: next(iter(v.values())).report.get("versions") for k, v in (("a", a), ("b", b))}
    return RunDiff(
        a_path, b_path, bags, pooled, first,
        {"a": sorted(set(a) - set(b)), "b": sorted(set(b) - set(a))},
    )  # fmt: skip


# --- the gate -------------------------------------------------------------------------

_BOUND = re.compile(r"^\s*([a-z0-9_]+)\s*:\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*(%?)\s*$")


@dataclass(frozen=True)
class Bound:
    metric: str
    limit: float  # signed: the allowed change (a fraction when relative)
    relative: bool

    def __str__(self) -> str:
        value = self.limit * 100 if self.relative else self.limit
        return f"{self.metric}:{value:+g}{'%' if self.relative else ''}"


def parse_fail_on(spec: str) -> list[Bound]:
    """``"recall:-0.02,latency_p95:+20%"`` -> bounds; ValueError naming a bad item."""
    known = set(METRICS) | set(RUN_METRICS)
    bounds = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        m = _BOUND.match(item)
        if not m:
            raise ValueError(f"--fail-on item {item!r}: expected METRIC:[+-]NUMBER[%]")
        name, number, percent = m.groups()
        if name not in known:
            raise ValueError(
                f"--fail-on item {item!r}: unknown metric {name!r}; known: {sorted(known)}"
            )
        bounds.append(Bound(name, float(number) / (100 if percent else 1), bool(percent)))
    if not bounds:
        raise ValueError("--fail-on: no bound given")
    return bounds


def gate(diff: RunDiff, bounds: list[Bound]) -> list[str]:
    """One line per bound the pooled change breaks (empty: the change may merge)."""
    failures = [f"bag {b.name}: {b.problem}" for b in diff.bags if b.problem]
    failures += [f"bag {n}: in run A, missing from run B" for n in diff.only_in.get("a", [])]
    for bound in bounds:
        m = diff.pooled_metric(bound.metric)
        if m is None or not (np.isfinite(m.a) and np.isfinite(m.b)):
            failures.append(f"{bound.metric}: not measured in both runs (bound {bound})")
            continue
        change = m.relative if bound.relative else m.delta
        direction = np.sign(bound.limit) or -m.better
        if change * direction > abs(bound.limit) + 1e-12:
            shown = f"{change * 100:+.1f}%" if bound.relative else f"{change:+.4g}{m.unit}"
            ci = f", 95% CI [{m.low:+.4g}, {m.high:+.4g}]" if m.low is not None else ""
            failures.append(
                f"{bound.metric}: {m.a:.4g} -> {m.b:.4g} ({shown}{ci}) beyond the bound {bound}"
            )
    return failures
