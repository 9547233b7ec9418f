"""Replay's one-frame lookahead (models of frame N+1 on the worker while frame N is fused)
gives the outputs of the plain pipeline, frame for frame, through a time jump too."""

from __future__ import annotations

import json
import threading

import numpy as np

from conftest import REPO
from multimodal_perception.config import load_parameters
from multimodal_perception.lookahead import Lookahead
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

SHIPPED = REPO / "bags" / "urban_crossing_5s"


def _pipeline(threads: int) -> Pipeline:
    params = load_parameters(REPO / "config" / "perception.yaml").with_overrides(
        {"performance.threads": threads}
    )
    return Pipeline(params, RosbagsFactory(get_project_typestore()))


def _comparable(outputs) -> list[tuple[str, int, str]]:
    """Scenes (without their wall-clock latency) and the 3D objects, in output order."""
    rows = []
    for o in outputs:
        if o.topic == "scene":
            scene = json.loads(o.msg.data)
            scene.pop("latency_ms")
            rows.append((o.topic, o.stamp_ns, json.dumps(scene, sort_keys=True)))
        elif o.topic in ("scene_text", "events"):
            rows.append((o.topic, o.stamp_ns, o.msg.data))
    return rows


def test_lookahead_gives_the_plain_pipelines_outputs_through_a_time_jump():
    records = list(iter_bag(SHIPPED))
    played = records + records[: len(records) // 2]  # the bag loops: header time jumps back
    plain = _pipeline(threads=1)
    expected = []
    for rec in played:
        expected += plain.process(rec.topic, rec.msg)
    expected += plain.finish()

    ahead_pipeline = _pipeline(threads=2)  # parallel models: prefetch on the worker
    assert ahead_pipeline.models.parallel
    ahead = Lookahead(ahead_pipeline)
    got = []
    held_at_jump = []
    for rec in played:
        before = ahead_pipeline.sync.resets
        got += ahead.process(rec.topic, rec.msg)
        if ahead_pipeline.sync.resets != before:
            held_at_jump.append(len(ahead.held))
    got += ahead.finish()

    assert plain.sync.resets == ahead_pipeline.sync.resets == 1
    assert held_at_jump == [0]  # the frame held before the jump ran before the reset
    a, b = _comparable(expected), _comparable(got)
    assert len(a) == len(b) > 140
    assert a == b
    assert ahead_pipeline.frames == plain.frames
    assert ahead_pipeline.accounting() == plain.accounting()
    # Every frame's models ran on the worker, ahead of its core.
    assert not ahead_pipeline.core._prefetched
    assert ahead_pipeline.timings["detector"] and max(ahead_pipeline.timings["segmenter"]) >= 0


def _model_threads() -> set[threading.Thread]:
    names = ("mmp-segmenter", "mmp-detector")
    return {t for t in threading.enumerate() if t.name.startswith(names)}


def test_closing_a_pipeline_stops_the_model_workers_it_started():
    before = _model_threads()
    pipeline = _pipeline(threads=2)
    ahead = Lookahead(pipeline)
    for rec in list(iter_bag(SHIPPED))[:60]:
        ahead.process(rec.topic, rec.msg)
    ahead.finish()
    started = _model_threads() - before
    assert {t.name.split("_")[0] for t in started} == {"mmp-segmenter", "mmp-detector"}
    # A second pipeline on the same stack (a batch worker's) leaves the stack running.
    borrower = Pipeline(pipeline.params, pipeline.factory, models=pipeline.models)
    borrower.close()
    assert all(t.is_alive() for t in started)
    pipeline.close()
    assert not any(t.is_alive() for t in started)
    # Closed is not broken: the stack starts its worker again when asked.
    detected = pipeline.models.start_detector(np.zeros((64, 96, 3), np.uint8))
    assert detected is not None
    detected.result(timeout=30)  # raises if the restarted worker failed
    pipeline.models.close()
