"""CLEAR-MOT tracking scores of a replay of a synthetic bag against the world's exact
ground truth (``/ground_truth/scene``): matches, misses, false tracks, id switches and
velocity errors, pooled and per frame (the unit ``mmp diff`` resamples)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from .ros_pkg.bag_io import iter_bag


@dataclass(frozen=True)
class TrackingFrame:
    stamp_ns: int
    gt: int
    misses: int
    false_positives: int
    id_switches: int


@dataclass
class TrackingScores:
    frames: int = 0
    gt: int = 0
    matches: int = 0
    misses: int = 0
    false_positives: int = 0
    id_switches: int = 0
    velocity_errors: list[float] = field(default_factory=list)  # objects seen by radar
    velocity_errors_no_radar: list[float] = field(default_factory=list)
    ids_per_gt: dict[int, list[int]] = field(default_factory=dict)  # GT id -> track ids seen
    per_frame: list[TrackingFrame] = field(default_factory=list)

    @property
    def mota(self) -> float:
        return 1.0 - (self.misses + self.false_positives + self.id_switches) / max(self.gt, 1)

    def format(self, title: str) -> str:
        v = np.asarray(self.velocity_errors)
        w = np.asarray(self.velocity_errors_no_radar)
        return (
            f"{title}: {self.frames} frames, {self.gt} GT objects, MOTA {self.mota:.3f}, "
            f"{self.matches} matched, {self.misses} missed, {self.false_positives} false, "
            f"{self.id_switches} id switches; velocity error median "
            f"{np.median(v) if v.size else float('nan'):.2f} m/s with radar ({v.size}), "
            f"{np.median(w) if w.size else float('nan'):.2f} m/s without ({w.size})"
        )


def evaluate_tracking(
    path: str | Path,
    max_range: float = 50.0,
    min_pixels: int = 200,
    gate_m: float = 2.0,
    gate_per_m: float = 0.06,
    t_min: float = 0.0,
) -> TrackingScores:
    """CLEAR-MOT on a replay of a synthetic bag: confirmed tracks against the exact ground
    truth (/ground_truth/scene), matched by bird's-eye distance in base_link (gate: the
    larger of ``gate_m`` and ``gate_per_m`` x range) with the Hungarian method. GT objects
    count when visible (``min_pixels``) within ``max_range``; outputs near GT objects that
    do not count are ignored, not false."""
    gt_by: dict[int, dict] = {}
    out_by: dict[int, dict] = {}
    for rec in iter_bag(Path(path), ["/ground_truth/scene", "/multimodal_perception/scene"]):
        scene = json.loads(rec.msg.data)
        (gt_by if rec.topic == "/ground_truth/scene" else out_by)[scene["stamp_ns"]] = scene
    scores = TrackingScores()
    last_track: dict[int, int] = {}
    for stamp in sorted(out_by):
        gt_scene, out_scene = gt_by.get(stamp), out_by[stamp]
        if gt_scene is None or gt_scene["t"] < t_min:
            continue
        scores.frames += 1
        switches_before = scores.id_switches
        gts = [o for o in gt_scene["objects"] if o["range_m"] <= max_range]
        counted = [o for o in gts if o["visible_pixels"] >= min_pixels]
        outs = [
            o
            for o in out_scene["objects"]
            if o["confirmed"] and o["center"] is not None and o["range_m"] <= max_range + 10.0
        ]
        scores.gt += len(counted)
        cost = np.full((len(gts), len(outs)), 1e6)
        for i, g in enumerate(gts):
            for j, o in enumerate(outs):
                d = float(
                    np.hypot(
                        g["center_base"][0] - o["center"][0], g["center_base"][1] - o["center"][1]
                    )
                )
                if d <= max(gate_m, gate_per_m * g["range_m"]):
                    cost[i, j] = d
        rows, cols = linear_sum_assignment(cost) if len(gts) and len(outs) else ([], [])
        matched_out = set()
        matched_counted = set()
        for i, j in zip(rows, cols, strict=True):
            if cost[i, j] >= 1e6:
                continue
            matched_out.add(j)
            g, o = gts[i], outs[j]
            if g["visible_pixels"] < min_pixels:
                continue  # matched to a GT object that does not count: ignored
            matched_counted.add(g["track_id"])
            scores.matches += 1
            previous = last_track.get(g["track_id"])
            if previous is not None and previous != o["track_id"]:
                scores.id_switches += 1
            last_track[g["track_id"]] = o["track_id"]
            scores.ids_per_gt.setdefault(g["track_id"], [])
            if o["track_id"] not in scores.ids_per_gt[g["track_id"]]:
                scores.ids_per_gt[g["track_id"]].append(o["track_id"])
            if o["velocity"] is not None:
                err = float(
                    np.hypot(
                        o["velocity"][0] - g["velocity_base"][0],
                        o["velocity"][1] - g["velocity_base"][1],
                    )
                )
                (
                    scores.velocity_errors
                    if "radar" in o["sensors"]
                    else scores.velocity_errors_no_radar
                ).append(err)
        misses = sum(1 for g in counted if g["track_id"] not in matched_counted)
        false = sum(1 for j in range(len(outs)) if j not in matched_out)
        scores.misses += misses
        scores.false_positives += false
        scores.per_frame.append(
            TrackingFrame(stamp, len(counted), misses, false, scores.id_switches - switches_before)
        )
    return scores
