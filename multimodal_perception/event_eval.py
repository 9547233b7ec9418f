"""Inspection event evaluation: ground-truth events, their matching with the pipeline's
events, and precision, recall and detection delay per rule.

Ground truth applies the zones file's rules (``fusion.zones.ZoneMonitor``: the same
geometry, rules and debouncing as the pipeline) to the exact actor states of a synthetic
bag's ``/ground_truth/scene`` (positions, true sizes, speeds over ground; no perception).
Predicted events are the ``mmp.events/1`` records of a replay's events topic, a started
and an ended record per event id. An event still active when the bag ends ends at its last
frame. A predicted event matches a true one of the same zone and rule when it starts
within the true [start - tolerance, end + tolerance], one to one: it overlaps the true
event and did not start well before it (an alarm already on, say for a false person, is
not the detection of someone entering). The detection delay is the predicted start minus
the true start; the time IoU of a match (overlap over union) shows predicted events that
run on long after the situation ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fusion.zones import EVENT_SCHEMA, NS, RULES, TrackedObject, Zone, ZoneMonitor, load_zones
from .sim.groundtruth import GT_BOX_MARGIN

EVENTS_TOPIC = "/multimodal_perception/events"
SCENE_TOPIC = "/multimodal_perception/scene"
GT_SCENE_TOPIC = "/ground_truth/scene"
TOLERANCE_S = 1.0
# Which ground-truth fields hold an object in a zone's frame (the synthetic world's tf has
# odom and base_link).
_GT_FRAMES = {
    "odom": ("center_odom", "yaw_odom", "velocity_odom"),
    "base_link": ("center_base", "yaw_base", "velocity_base"),
}


@dataclass(frozen=True)
class ZoneEvent:
    """One situation of one rule in one zone, from its start to its end (ns, header time)."""

    zone: str
    rule: str
    start_ns: int
    end_ns: int
    track_ids: tuple[int, ...] = ()
    open_ended: bool = False  # still active at the last frame (end_ns is that frame)


def events_from_records(records: Iterable[dict[str, Any]], last_stamp_ns: int) -> list[ZoneEvent]:
    """Pair ``mmp.events/1`` started/ended records by event id into events."""
    started: dict[int, dict[str, Any]] = {}
    events = []
    for r in records:
        if r.get("schema") != EVENT_SCHEMA:
            continue
        if r["state"] == "started":
            started[r["event_id"]] = r
        elif r["event_id"] in started:  # (an end whose start is not in the bag is dropped)
            s = started.pop(r["event_id"])
            ids = tuple(sorted(set(s["track_ids"]) | set(r["track_ids"])))
            events.append(ZoneEvent(s["zone"], s["rule"], s["start_ns"], r["end_ns"], ids))
    for s in started.values():
        end = max(last_stamp_ns, s["start_ns"])
        events.append(
            ZoneEvent(s["zone"], s["rule"], s["start_ns"], end, tuple(s["track_ids"]), True)
        )
    return sorted(events, key=lambda e: (e.start_ns, e.zone, e.rule))


def _truth_object(o: dict[str, Any], frame: str, zone: str) -> TrackedObject:
    try:
        center, yaw, velocity = _GT_FRAMES[frame]
    except KeyError:
        raise ValueError(
            f"zone {zone!r} is in frame {frame!r}; the synthetic ground truth has "
            f"{' and '.join(_GT_FRAMES)}"
        ) from None
    # The true extents: the ground-truth boxes carry an annotator's margin on every side.
    size = np.asarray(o["size_lwh"], float) - 2 * GT_BOX_MARGIN
    speed = float(np.hypot(*o[velocity][:2]))
    return TrackedObject(
        o["track_id"], o["detection_class"], np.asarray(o[center], float), size, o[yaw], speed
    )


def truth_events(gt_scenes: Iterable[dict[str, Any]], zones: list[Zone]) -> list[ZoneEvent]:
    """Ground-truth events: the zones' rules on the exact actor states of each scene
    (``/ground_truth/scene`` JSON: ``stamp_ns`` and ``objects``), in stamp order."""
    monitor = ZoneMonitor(zones)
    records: list[dict[str, Any]] = []
    last = 0
    for scene in sorted(gt_scenes, key=lambda s: s["stamp_ns"]):
        last = scene["stamp_ns"]
        by_zone = {
            z.name: [_truth_object(o, z.frame, z.name) for o in scene["objects"]] for z in zones
        }
        records += monitor.step(last, by_zone)
    return events_from_records(records, last)


@dataclass
class RuleScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    delays_s: list[float] = field(default_factory=list)  # predicted - true start, per match
    time_ious: list[float] = field(default_factory=list)  # overlap / union, per match

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def median_delay_s(self) -> float:
        return float(np.median(self.delays_s)) if self.delays_s else float("nan")

    @property
    def max_delay_s(self) -> float:
        return float(max(self.delays_s)) if self.delays_s else float("nan")

    @property
    def median_time_iou(self) -> float:
        return float(np.median(self.time_ious)) if self.time_ious else float("nan")


@dataclass
class EventScores:
    rules: dict[str, RuleScore]
    matches: list[tuple[ZoneEvent, ZoneEvent]]  # (predicted, true)
    false_positives: list[ZoneEvent]
    missed: list[ZoneEvent]
    tolerance_s: float

    def format(self, title: str) -> str:
        lines = [
            f"{title} (match: same zone and rule, overlap within {self.tolerance_s:g} s)",
            f"  {'rule':16} {'true':>4} {'pred':>4} {'tp':>4} {'fp':>4} {'fn':>4} {'prec':>6} "
            f"{'recall':>6} {'delay median':>12} {'max':>7} {'tIoU':>5}",
        ]
        for rule, s in self.rules.items():
            lines.append(
                f"  {rule:16} {s.tp + s.fn:4d} {s.tp + s.fp:4d} {s.tp:4d} {s.fp:4d} {s.fn:4d} "
                f"{_num(s.precision, 6)} {_num(s.recall, 6)} {_num(s.median_delay_s, 10, ' s')} "
                f"{_num(s.max_delay_s, 5, ' s')} {_num(s.median_time_iou, 5)}"
            )
        return "\n".join(lines)


def _num(value: float, width: int, unit: str = "") -> str:
    if np.isnan(value):
        return f"{'-':>{width + len(unit)}}"
    return f"{value:{width}.2f}{unit}"


def evaluate_events(
    predicted: list[ZoneEvent],
    truth: list[ZoneEvent],
    tolerance_s: float = TOLERANCE_S,
    rules: Iterable[str] = (),
) -> EventScores:
    """Match predicted to true events one to one within each (zone, rule): the most
    matches, then the smallest total |delay| (Hungarian). Scores per rule, listing
    ``rules`` (the configured ones) even when they have no events."""
    from scipy.optimize import linear_sum_assignment

    tol = int(tolerance_s * NS)
    seen = {e.rule for e in [*predicted, *truth]}
    order = [r for r in (*rules, *RULES, *sorted(seen)) if r in seen or r in rules]
    scores = EventScores({r: RuleScore() for r in dict.fromkeys(order)}, [], [], [], tolerance_s)
    for zone, rule in sorted({(e.zone, e.rule) for e in [*predicted, *truth]}):
        preds = [e for e in predicted if (e.zone, e.rule) == (zone, rule)]
        trues = [e for e in truth if (e.zone, e.rule) == (zone, rule)]
        delay = np.array([[(p.start_ns - t.start_ns) / NS for t in trues] for p in preds])
        ok = np.array(
            [[t.start_ns - tol <= p.start_ns <= t.end_ns + tol for t in trues] for p in preds]
        ).reshape(len(preds), len(trues))
        # A non-overlapping pair costs more than all overlapping ones together, so the
        # assignment first maximises the number of matches.
        big = 1.0 + np.abs(delay[ok]).sum() if ok.any() else 1.0
        cost = np.where(ok, np.abs(delay.reshape(ok.shape)), big)
        rows, cols = linear_sum_assignment(cost) if ok.any() else ([], [])
        pairs = [(i, j) for i, j in zip(rows, cols, strict=True) if ok[i, j]]
        s = scores.rules[rule]
        for i, j in pairs:
            p, t = preds[i], trues[j]
            scores.matches.append((p, t))
            s.delays_s.append(float(delay[i, j]))
            union = max(p.end_ns, t.end_ns) - min(p.start_ns, t.start_ns)
            overlap = max(0, min(p.end_ns, t.end_ns) - max(p.start_ns, t.start_ns))
            s.time_ious.append(overlap / union if union else 1.0)
        s.tp += len(pairs)
        matched_p, matched_t = {i for i, _ in pairs}, {j for _, j in pairs}
        scores.false_positives += [p for i, p in enumerate(preds) if i not in matched_p]
        scores.missed += [t for j, t in enumerate(trues) if j not in matched_t]
        s.fp += len(preds) - len(pairs)
        s.fn += len(trues) - len(pairs)
    return scores


def evaluate_bag_events(
    output_bag: str | Path, zones_file: str | Path, tolerance_s: float = TOLERANCE_S
) -> tuple[EventScores, list[ZoneEvent], list[ZoneEvent]]:
    """A replay's ``output.mcap`` of a synthetic bag (its ``/ground_truth/scene`` passes
    through the replay) replayed with ``zones_file``: scores, predicted and true events."""
    from .ros_pkg.bag_io import iter_bag

    zones = load_zones(zones_file)
    records, gt_scenes = [], []
    last, inspected = 0, False
    for rec in iter_bag(Path(output_bag), [EVENTS_TOPIC, SCENE_TOPIC, GT_SCENE_TOPIC]):
        doc = json.loads(rec.msg.data)
        if rec.topic == EVENTS_TOPIC:
            records.append(doc)
        elif rec.topic == GT_SCENE_TOPIC:
            gt_scenes.append(doc)
        else:
            last = max(last, doc["stamp_ns"])
            inspected |= "events" in doc  # the scene carries active events when zones are on
    if not gt_scenes:
        raise ValueError(f"{output_bag}: no {GT_SCENE_TOPIC}: events need a synthetic bag")
    if not inspected:
        raise ValueError(
            f"{output_bag}: the replay ran without zones: replay with "
            f"--set inspection.zones_file={zones_file}"
        )
    predicted = events_from_records(records, last)
    names = {z.name for z in zones}
    if stray := sorted({e.zone for e in predicted} - names):
        raise ValueError(
            f"{output_bag}: events name zones {stray} that {zones_file} does not have "
            f"({sorted(names)}): give the zones file the replay used"
        )
    truth = truth_events(gt_scenes, zones)
    rules = [r.kind for z in zones for r in z.rules]
    return evaluate_events(predicted, truth, tolerance_s, rules), predicted, truth
