"""The frame core and its stages, called with numpy data only (no message types).

Frames come from the shipped bag, decoded and aligned once by the session driver in a
fixture; every test body then works on ``SyncedFrame`` / ``FrameResult`` objects and the
pure stage functions.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from conftest import REPO
from multimodal_perception.config import load_parameters
from multimodal_perception.core import FrameCore, select_classes
from multimodal_perception.frame import SyncedFrame
from multimodal_perception.fusion.alignment import AlignConfig, align
from multimodal_perception.fusion.box_evidence import lidar_box_evidence
from multimodal_perception.fusion.fusion3d import Object3D
from multimodal_perception.fusion.objects import deduplicate
from multimodal_perception.fusion.projection import Projection
from multimodal_perception.perception.detector import Detections
from multimodal_perception.perception.stack import load_models
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore
from multimodal_perception.scheduling import LatestSlot

SHIPPED = REPO / "bags" / "urban_crossing_5s"
PARAMS = load_parameters(REPO / "config" / "perception.yaml")


@pytest.fixture(scope="module")
def frames() -> list[SyncedFrame]:
    """The shipped bag's 50 frames, aligned (the only place messages are touched)."""
    session = Pipeline(PARAMS, RosbagsFactory(get_project_typestore()))
    groups = []
    for rec in iter_bag(SHIPPED):
        groups += session.ingest(rec.topic, rec.msg)
    groups += session.flush()
    config = AlignConfig(PARAMS["frames.base"], PARAMS["frames.fixed"], True)
    return [align(g, session.tf, session.camera_model, config) for g in groups]


@pytest.fixture(scope="module")
def models():
    return load_models(PARAMS)


def _steps(core: FrameCore, frames: list[SyncedFrame]):
    return [core.step(f) for f in frames]


def test_core_is_deterministic_and_pure(frames, models):
    a = _steps(FrameCore(PARAMS, models), frames[:12])
    b = _steps(FrameCore(PARAMS, models), frames[:12])
    assert len(a) == 12
    for x, y in zip(a, b, strict=True):
        assert x.stamp_ns == y.stamp_ns
        np.testing.assert_array_equal(x.detections.boxes, y.detections.boxes)
        assert [d.reason for d in x.decisions] == [d.reason for d in y.decisions]
        assert x.kept == y.kept and x.duplicates == y.duplicates
        x.scene.pop("latency_ms"), y.scene.pop("latency_ms")
        assert x.scene == y.scene
    assert sum(len(r.kept) for r in a) > 0 and any(r.tracks for r in a)


def test_stage_timings_come_from_the_injected_clock(frames, models):
    ticks = itertools.count()
    core = FrameCore(PARAMS, models, clock=lambda: next(ticks) * 0.002)  # 2 ms per reading
    result = core.step(frames[0])
    assert set(result.timings_ms) >= {"detector", "segmenter", "project", "filter", "tracking"}
    assert all(v == pytest.approx(2.0) for v in result.timings_ms.values())


def test_every_detector_box_is_kept_rejected_or_a_duplicate(frames, models):
    core = FrameCore(PARAMS, models)
    for result in _steps(core, frames[:20]):
        n = len(result.detections)
        kept, rejected = set(result.kept), set(result.rejected())
        assert kept.isdisjoint(rejected) and kept | rejected == set(range(n))
        for dropped, twin in result.duplicates.items():
            assert twin in kept and result.decisions[dropped].keep


def test_lost_odometry_keeps_the_tracker_in_its_frame(frames, models):
    core = FrameCore(PARAMS, models)
    before = _steps(core, frames[:10])
    assert before[-1].tracking_frame == "odom" and before[-1].tracks
    ids_before = {t.track_id for t in core.tracker.tracks}
    blind = core.step(dataclasses.replace(frames[10], T_fixed_base=None))
    assert "no_odometry" in blind.degraded
    assert blind.tracking_frame == "odom" and blind.tracks == {}
    assert {t.track_id for t in core.tracker.tracks} == ids_before  # coasting, not reset
    after = core.step(frames[11])
    assert {t.track_id for t in after.tracks.values()} & ids_before


def test_odometry_gone_longer_than_a_track_lives_restarts_in_base_link(frames, models):
    core = FrameCore(PARAMS, models)
    _steps(core, frames[:5])
    old_ids = {t.track_id for t in core.tracker.tracks}
    # 1.2 s without odometry (tracking.max_missed_s = 1.0): track in base_link instead.
    late = dataclasses.replace(frames[17], T_fixed_base=None)
    result = core.step(late)
    assert result.tracking_frame == "base_link" and result.scene["tracking_frame"] == "base_link"
    assert not {t.track_id for t in result.tracks.values()} & old_ids


def test_a_time_jump_keeps_track_ids_unique(frames, models):
    core = FrameCore(PARAMS, models)
    first = _steps(core, frames[:8])
    seen = {t.track_id for r in first for t in r.tracks.values()}
    core.reset_time()
    again = _steps(core, frames[:8])
    new = {t.track_id for r in again for t in r.tracks.values()}
    assert seen and new and min(new) > max(seen)


def test_frames_without_calibration_still_detect_and_say_why(frames, models):
    core = FrameCore(PARAMS, models)
    bare = dataclasses.replace(
        frames[5], camera=None, T_cam_base=None, degraded=("no_camera_info",)
    )
    result = core.step(bare)
    assert len(result.detections) > 0 and result.objects == {}
    assert "no_camera_info" in result.scene["degraded"]
    assert all(o["center"] is None for o in result.scene["objects"])


def test_select_classes_returns_what_it_leaves_out():
    det = Detections(
        np.zeros((3, 4), np.float32),
        np.array([0.9, 0.3, 0.8], np.float32),
        np.array([0, 1, 2]),
        ("person", "car", "kite"),
    )
    kept, left_out = select_classes(det, {"person", "car"})
    assert kept.labels() == ["person", "car"] and left_out.labels() == ["kite"]
    assert len(select_classes(det, set())[1]) == 0
    # A rig camera's own score threshold leaves out the weak car too.
    kept, left_out = select_classes(det, {"person", "car"}, min_score=0.5)
    assert kept.labels() == ["person"] and left_out.labels() == ["car", "kite"]


def _object(x: float, y: float) -> Object3D:
    return Object3D(np.array([x, y, 0.8]), np.array([0.6, 0.6, 1.7]), 0.0, "lidar", 10)


def test_deduplicate_keeps_the_higher_score_and_names_the_twin():
    boxes = np.array([[0, 0, 10, 20], [1, 1, 10, 20], [100, 0, 110, 20], [200, 0, 210, 20]], float)
    scores = np.array([0.5, 0.9, 0.8, 0.7])
    classes = ["person", "cyclist", "car", "person"]
    objects = {2: _object(10, 0), 3: _object(30, 5)}
    kept, dup = deduplicate(boxes, scores, classes, [0, 1, 2, 3], objects)
    assert kept == [1, 2, 3] and dup == {0: 1}  # person + cyclist overlap: one rider
    # Same 3D place and boxes overlapping by a third: one object seen twice ...
    objects[0] = _object(30.4, 5.2)
    boxes[0] = [204, 0, 214, 20]  # 60 % of box 3
    kept, dup = deduplicate(boxes, scores, classes, [0, 2, 3], objects)
    assert dup == {0: 3}
    # ... but two people side by side (< 1 m apart, boxes apart) are two people.
    boxes[0] = [300, 0, 310, 20]
    kept, dup = deduplicate(boxes, scores, classes, [0, 2, 3], objects)
    assert dup == {} and kept == [0, 2, 3]
    # A person and the bicycle they ride are two objects, even overlapping.
    bike = np.array([[0, 5, 12, 22], [1, 0, 11, 20]], float)
    kept, dup = deduplicate(bike, np.array([0.9, 0.8]), ["bicycle", "person"], [0, 1], {})
    assert kept == [0, 1] and dup == {}


def test_lidar_box_evidence_needs_a_compact_cluster_in_front_of_its_ring():
    rng = np.random.default_rng(3)
    inside = np.column_stack([rng.uniform(42, 58, 40), rng.uniform(30, 90, 40)])
    ring = np.column_stack([rng.uniform(20, 35, 20), rng.uniform(30, 90, 20)])
    uv = np.vstack([inside, ring])
    boxes = np.array([[40.0, 20.0, 60.0, 100.0]])
    near = Projection(uv, np.r_[np.full(40, 10.0), np.full(20, 25.0)], np.arange(60))
    flat = Projection(uv, np.r_[np.full(40, 10.0), np.full(20, 10.2)], np.arange(60))
    assert lidar_box_evidence(boxes, near)[0] > 0.9  # stands out from its surroundings
    assert lidar_box_evidence(boxes, flat)[0] < 0.3  # a wall: no depth step


def test_latest_slot_supersedes_and_reports_idle():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None and slot.put(2) == 1  # 1 never waited behind 2
    assert slot.take(0.1) == 2 and not slot.wait_idle(0.01)  # busy until done
    slot.done()
    assert slot.wait_idle(0.01) and slot.take(0.01) is None
    # One waiting frame per key (a rig's camera): another camera's frame never replaces
    # it; taken oldest first.
    assert slot.put(3, key="front") is None and slot.put(4, key="rear") is None
    assert slot.put(5, key="front") == 3
    assert slot.take(0.01) == 4
    slot.done()
    slot.put(6, key="rear")
    assert slot.close() == [5, 6] and slot.take(0.01) is None


def test_velocities_name_their_frame_and_relative_needs_the_ego_motion(frames, models):
    core = FrameCore(PARAMS, models)
    results = _steps(core, frames[:12])
    moving = [o for o in results[-1].scene["objects"] if o["velocity"] is not None]
    assert moving, "tracks with a velocity after 12 frames"
    ego = frames[11].ego.velocity[:2]
    for o in moving:
        assert o["velocity_frame"] == "over_ground"
        expected = np.array(o["velocity"]) - ego
        np.testing.assert_allclose(o["velocity_relative"], expected, atol=2e-3)
    # Without the ego's own motion, relative values are unknown, not the over-ground ones.
    blind = core.step(dataclasses.replace(frames[12], ego=None))
    for o in blind.scene["objects"]:
        if o["velocity"] is not None:
            assert o["velocity_relative"] is None and o["range_rate_mps"] is None
