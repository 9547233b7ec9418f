"""Scores of a camera-rig (surround) replay: per camera and for the merged scene.

Owns :func:`evaluate_rig` and :func:`format_rig_scores`. The ground truth is in the input
bag (``sim/surround.py`` writes ``/ground_truth/<camera>/...``), the outputs in the
replay's ``output.mcap``; the two are joined on header stamps (``stamp_ns`` for scenes).

- Per camera: 2D recall and precision at IoU 0.5 before and after the consistency filter,
  by :func:`~multimodal_perception.evaluation.evaluate_output_bag` on that camera's topics.
- Merged scene (``/multimodal_perception/scene``, published on one camera's stamps): its
  located objects against the 3D ground truth of the same stamp, in base_link, matched
  one-to-one (Hungarian) within ``match_m`` bird's-eye distance and the same class group
  (``fusion.tracking.CLASS_GROUPS``). A GT object counts when some camera boxed it in the
  last rig cycle: a ``/ground_truth/<camera>/boxes_2d`` stamped in [stamp - window, stamp].
  An output matched to a GT object that does not count is ignored (neither true nor false,
  as in ``tracking_eval.evaluate_tracking``). An unmatched output within ``match_m`` of a matched GT
  object of its group is a duplicate: a second report of one physical object; it is also
  a false positive. Duplicate rate = duplicates / scored outputs (matched + false).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import SYNTHETIC_CLASSES, BagScores, evaluate_output_bag
from .fusion.tracking import CLASS_GROUPS
from .ros_pkg.bag_io import bag_metadata, iter_bag
from .ros_pkg.stamps import stamp_to_ns

OUTPUT_NS = "/multimodal_perception"
MERGED_SCENE = f"{OUTPUT_NS}/scene"
RIG_CYCLE_NS = 100_000_000  # one 10 Hz rig cycle: every camera fired once
_NO_MATCH = 1e6  # Hungarian cost of a pair outside the gate


def surround_cameras(bag: str | Path) -> list[str] | None:
    """The camera names of a surround bag (metadata ``surround: true``), else None."""
    text = bag_metadata(bag).get("mmp.synthetic_config")
    try:
        config = json.loads(text) if text else {}
    except ValueError:
        return None
    if not isinstance(config, dict) or config.get("surround") is not True:
        return None
    return [str(n) for n in config.get("cameras", [])]


def rig_input_bag(output: Path, given: str | None) -> Path | None:
    """The surround input bag of a replay output: ``given`` (``mmp eval --input``) or the
    first bag named in the replay's report.json; None when it is not a surround bag."""
    candidates = [Path(given)] if given else []
    report = (output if output.is_dir() else output.parent) / "report.json"
    if not given and report.is_file():
        candidates += [Path(b) for b in json.loads(report.read_text()).get("bags", [])[:1]]
    for bag in candidates:
        if surround_cameras(bag) is not None:
            return bag
    return None


@dataclass
class MergedScores:
    frames: int = 0  # merged scenes scored
    frames_without_gt: int = 0  # merged scenes whose stamp no camera's ground truth has
    gt: int = 0  # visible GT objects, summed over frames
    matched: int = 0
    false_positives: int = 0  # unmatched outputs, duplicates included
    duplicates: int = 0
    ignored: int = 0  # outputs on GT objects that no camera boxed
    unlocated: int = 0  # outputs without a centre: not scored
    gt_reported_twice: int = 0  # (frame, GT object) pairs with a duplicate
    ids_reported_twice: set[int] = field(default_factory=set)
    ids_per_gt: dict[int, set[Any]] = field(default_factory=dict)  # GT id -> track ids

    @property
    def outputs(self) -> int:
        return self.matched + self.false_positives

    @property
    def recall(self) -> float:
        return self.matched / self.gt if self.gt else float("nan")

    @property
    def precision(self) -> float:
        return self.matched / self.outputs if self.outputs else float("nan")

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.outputs if self.outputs else float("nan")

    def ids_per_object(self) -> tuple[float, int]:
        """Mean and largest number of distinct track ids given to one GT object."""
        counts = [len(ids) for ids in self.ids_per_gt.values()]
        return (float(np.mean(counts)), max(counts)) if counts else (float("nan"), 0)


@dataclass
class RigScores:
    cameras: dict[str, BagScores]
    merged: MergedScores
    input_bag: str
    output_bag: str


@dataclass(frozen=True)
class _GtObject:
    track_id: int
    group: str
    xy: np.ndarray


def _group(cls: str) -> str:
    return CLASS_GROUPS.get(cls, cls)


def _output_path(path: Path) -> Path:
    return path / "output.mcap" if path.is_dir() and (path / "output.mcap").exists() else path


def evaluate_rig(
    input_bag: str | Path,
    output_bag: str | Path,
    cameras: Sequence[str] | None = None,
    vocabulary: tuple[str, ...] = SYNTHETIC_CLASSES,
    match_m: float = 2.0,
    window_ns: int = RIG_CYCLE_NS,
) -> RigScores:
    """Score a replay of a surround bag, per camera and merged (see the module doc)."""
    input_bag, output_bag = Path(input_bag), _output_path(Path(output_bag))
    if cameras is None:
        cameras = surround_cameras(input_bag)
        if not cameras:
            raise ValueError(f"{input_bag}: not a surround bag (no 'surround' metadata)")
    per_camera = {
        name: evaluate_output_bag(
            [input_bag, output_bag],
            vocabulary,
            topics={
                "gt2d": f"/ground_truth/{name}/boxes_2d",
                "gt3d": f"/ground_truth/{name}/objects_3d",
                "kept": f"{OUTPUT_NS}/{name}/detections_2d",
                "rejected": f"{OUTPUT_NS}/{name}/rejected_2d",
                "out3d": f"{OUTPUT_NS}/{name}/objects_3d",
                "scene": f"{OUTPUT_NS}/{name}/scene",
            },
        )
        for name in cameras
    }
    merged = _evaluate_merged(input_bag, output_bag, cameras, match_m, window_ns)
    return RigScores(per_camera, merged, str(input_bag), str(output_bag))


def _read_truth(
    input_bag: Path, cameras: Sequence[str]
) -> tuple[dict[int, list[_GtObject]], np.ndarray, list[set[int]]]:
    """3D ground truth by stamp (any camera's), and every camera frame's stamp with the
    track ids it boxed (sorted by stamp)."""
    objects: dict[int, list[_GtObject]] = {}
    boxed: list[tuple[int, set[int]]] = []
    topics = {f"/ground_truth/{n}/objects_3d" for n in cameras}
    topics |= {f"/ground_truth/{n}/boxes_2d" for n in cameras}
    for rec in iter_bag(input_bag, sorted(topics)):
        if rec.msg is None:
            continue
        stamp = stamp_to_ns(rec.msg.header.stamp)
        if rec.topic.endswith("boxes_2d"):
            boxed.append((stamp, {int(d.id) for d in rec.msg.detections}))
            continue
        objects[stamp] = [
            _GtObject(
                int(d.id),
                _group(d.results[0].hypothesis.class_id),
                np.array([d.bbox.center.position.x, d.bbox.center.position.y]),
            )
            for d in rec.msg.detections
        ]
    boxed.sort(key=lambda b: b[0])
    return objects, np.array([s for s, _ in boxed], dtype=np.int64), [ids for _, ids in boxed]


def _evaluate_merged(
    input_bag: Path, output_bag: Path, cameras: Sequence[str], match_m: float, window_ns: int
) -> MergedScores:
    from scipy.optimize import linear_sum_assignment

    truth, box_stamps, box_ids = _read_truth(input_bag, cameras)
    scenes = {}
    for rec in iter_bag(output_bag, [MERGED_SCENE]):
        if rec.msg is not None:
            scene = json.loads(rec.msg.data)
            scenes[int(scene["stamp_ns"])] = scene  # a copied input would repeat it: once
    scores = MergedScores()
    ids_per_gt: dict[int, set[Any]] = defaultdict(set)
    twice: set[int] = set()
    for stamp in sorted(scenes):
        gts = truth.get(stamp)
        if gts is None:
            scores.frames_without_gt += 1
            continue
        scores.frames += 1
        lo = np.searchsorted(box_stamps, stamp - window_ns, side="left")
        hi = np.searchsorted(box_stamps, stamp, side="right")  # this stamp's frames too
        visible = set().union(*box_ids[lo:hi])
        counted = [g.track_id in visible for g in gts]
        scores.gt += sum(counted)
        located = [o for o in scenes[stamp].get("objects", []) if o.get("center") is not None]
        scores.unlocated += len(scenes[stamp].get("objects", [])) - len(located)
        outs = [(o.get("track_id"), _group(str(o.get("class"))), o["center"]) for o in located]
        dist = np.array(
            [[float(np.hypot(*(g.xy - np.asarray(c[:2])))) for _, _, c in outs] for g in gts]
        ).reshape(len(gts), len(outs))
        same = np.array([[g.group == grp for _, grp, _ in outs] for g in gts], dtype=bool)
        gate = same.reshape(dist.shape) & (dist <= match_m)
        cost = np.where(gate, dist, _NO_MATCH)
        rows, cols = linear_sum_assignment(cost) if cost.size else ([], [])
        match_of_out = {j: i for i, j in zip(rows, cols, strict=True) if gate[i, j]}
        for j, i in match_of_out.items():
            if not counted[i]:
                scores.ignored += 1
                continue
            scores.matched += 1
            if outs[j][0] is not None:
                ids_per_gt[gts[i].track_id].add(outs[j][0])
        matched_gt = sorted(set(match_of_out.values()))
        duplicated: set[int] = set()
        for j in range(len(outs)):
            if j in match_of_out:
                continue
            near = [i for i in matched_gt if gate[i, j]]
            twin = min(near, key=lambda i: dist[i, j]) if near else None
            if twin is not None and not counted[twin]:
                scores.ignored += 1  # a second report of an object that does not count
                continue
            scores.false_positives += 1
            if twin is not None:  # a second report of a matched object
                scores.duplicates += 1
                duplicated.add(twin)
        scores.gt_reported_twice += len(duplicated)
        twice |= {gts[i].track_id for i in duplicated}
    scores.ids_reported_twice = twice
    scores.ids_per_gt = dict(ids_per_gt)
    return scores


def format_rig_scores(scores: RigScores) -> str:
    """A text table: one row per camera (2D before/after the filter), then the merged scene."""
    lines = [
        f"surround rig: {scores.output_bag} against the ground truth of {scores.input_bag}",
        f"  {'camera':8} {'frames':>6} {'gt':>5}  {'before: recall':>14} {'prec':>6}  "
        f"{'after: recall':>13} {'prec':>6}",
    ]
    for name, s in scores.cameras.items():
        n_gt = sum(c.n_gt for c in s.after.scores.values())
        lines.append(
            f"  {name:8} {s.frames:6d} {n_gt:5d}  {s.before.total_recall():14.3f} "
            f"{s.before.total_precision():6.3f}  {s.after.total_recall():13.3f} "
            f"{s.after.total_precision():6.3f}"
        )
    m = scores.merged
    mean_ids, max_ids = m.ids_per_object()
    fragmented = sum(1 for ids in m.ids_per_gt.values() if len(ids) > 1)
    lines += [
        f"  merged scene: {m.frames} frames ({m.frames_without_gt} without ground truth), "
        f"{m.gt} visible GT objects",
        f"    recall {m.recall:.3f}, precision {m.precision:.3f}: {m.matched} matched, "
        f"{m.false_positives} false, {m.ignored} ignored (on objects no camera boxed), "
        f"{m.unlocated} without a centre",
        f"    duplicate rate {m.duplicate_rate:.3f}: {m.duplicates} duplicates; "
        f"{m.gt_reported_twice} GT object-frames reported twice "
        f"({len(m.ids_reported_twice)} distinct objects)",
        f"    track ids per GT object: mean {mean_ids:.2f}, max {max_ids}; "
        f"{fragmented}/{len(m.ids_per_gt)} objects had more than one",
    ]
    return "\n".join(lines)
