"""The rclpy node in-process: its callbacks and the replay job give identical frames, the
latest-wins hand-over accounts for every frame, and parameters are declared from the
schema with their ranges."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from conftest import REPO, need_rclpy
from multimodal_perception.config import PARAMETERS, load_parameters
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

rclpy = need_rclpy()
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402

from multimodal_perception.ros_pkg.node import PerceptionNode  # noqa: E402

SHIPPED = REPO / "bags" / "urban_crossing_5s"
TYPESTORE = get_project_typestore()


def to_rclpy(rec):
    """A rosbags message as the rosidl class, through its CDR bytes (as DDS delivers it)."""
    package, _, name = rec.msgtype.split("/")
    cls = getattr(importlib.import_module(f"{package}.msg"), name)
    return deserialize_message(bytes(TYPESTORE.serialize_cdr(rec.msg, rec.msgtype)), cls)


@pytest.fixture(scope="module")
def messages():
    return [rec for rec in iter_bag(SHIPPED) if not rec.topic.startswith("/ground_truth")]


def _node(**overrides: str) -> PerceptionNode:
    # Sim time with no /clock: the node's clock stands still, as in a paused replay, so
    # only messages drive the synchroniser (as in mmp replay).
    extra = [Parameter(k, value=v) for k, v in overrides.items()]
    return PerceptionNode(parameter_overrides=[Parameter("use_sim_time", value=True), *extra])


def _comparable(result):
    scene = dict(result.scene)
    scene.pop("latency_ms")
    return (
        result.stamp_ns,
        [d.reason for d in result.decisions],
        result.kept,
        result.duplicates,
        {i: t.track_id for i, t in result.tracks.items()},
        scene,
    )


@pytest.mark.parametrize("policy", ["wait", "latest"])
def test_node_callbacks_and_replay_give_identical_frame_results(ros, messages, policy):
    """Under either sync policy (latest: partners chosen in arrival order, here the bag's
    log-time order for both)."""
    sync = {"sync.lidar.policy": policy, "sync.radar.policy": policy}
    params = load_parameters(REPO / "config" / "perception.yaml").with_overrides(sync)
    replay = Pipeline(params, RosbagsFactory(TYPESTORE))
    replay.keep_results = True
    for rec in messages:
        replay.process(rec.topic, rec.msg)
    replay.finish()

    node = _node(**sync)
    try:
        node.pipeline.keep_results = True
        cameras = {"/camera/image_raw", "/camera/image_raw/compressed"}
        for rec in messages:
            node.on_message(rec.topic, to_rclpy(rec), camera=rec.topic in cameras)
            assert node.wait_idle(60), "the compute thread did not finish a frame"
        final = node.shutdown()
    finally:
        node.destroy_node()
    a, b = replay.results, node.pipeline.results
    assert len(a) == len(b) == 50
    for x, y in zip(a, b, strict=True):
        assert _comparable(x) == _comparable(y)
        np.testing.assert_array_equal(x.detections.boxes, y.detections.boxes)
        for i, obj in x.objects.items():
            np.testing.assert_allclose(obj.center, y.objects[i].center, atol=1e-9)
    camera = final["inputs"]["/camera/image_raw/compressed"]
    assert final["frames_published"] == camera["used"] == 50 and camera["dropped"] == {}
    assert final["inputs"] == replay.accounting()
    extrapolated = [r.scene["partners"].get("lidar") for r in a]
    if policy == "latest":  # the frames really fused older sweeps
        assert sum(e is not None and e["extrapolated_ms"] > 0 for e in extrapolated) >= 40
    else:
        assert not any(extrapolated)


def test_latest_wins_counts_every_superseded_frame(ros, messages):
    node = _node()
    try:
        cameras = {"/camera/image_raw", "/camera/image_raw/compressed"}
        for rec in messages:  # as fast as it goes: compute cannot keep up
            node.on_message(rec.topic, to_rclpy(rec), camera=rec.topic in cameras)
        final = node.shutdown()
    finally:
        node.destroy_node()
    camera = final["inputs"]["/camera/image_raw/compressed"]
    superseded = camera["dropped"].get("superseded_by_newer_frame", 0)
    assert superseded > 0, "feeding faster than compute must supersede frames"
    assert camera["in"] == camera["used"] + sum(camera["dropped"].values()) == 50
    assert final["frames_published"] == camera["used"] == 50 - superseded
    for topic, row in final["inputs"].items():
        assert row["in"] == row["used"] + sum(row["dropped"].values()), topic


def test_a_parameter_of_the_wrong_type_is_one_clear_error(ros):
    """`person: -1` in a parameter file for a float parameter: rclpy refuses the type; the
    node says which parameter and how to write it (main prints it and exits 2)."""
    from multimodal_perception.config import ParameterError

    with pytest.raises(ParameterError, match=r"filter\.threshold\.person.*-1\.0"):
        PerceptionNode(parameter_overrides=[Parameter("filter.threshold.person", value=-1)])


def test_parameters_are_declared_from_the_schema_with_ranges(ros):
    node = _node()
    try:
        names = {p.name for p in PARAMETERS}
        assert names <= set(node._parameters)
        desc = node.describe_parameter("filter.threshold.person")
        assert desc.floating_point_range[0].to_value == 1.0 and not desc.read_only
        assert desc.floating_point_range[0].from_value == -1.0  # -1: the models' threshold
        assert node.describe_parameter("topics.camera").read_only
        ok = node.set_parameters([Parameter("filter.threshold.person", value=0.3)])[0]
        assert ok.successful and node.pipeline.params["filter.threshold.person"] == 0.3
        assert node.pipeline.core.filter.config.threshold("person") == 0.3
        back = node.set_parameters([Parameter("filter.threshold.person", value=-1.0)])[0]
        calibrated = node.pipeline.models.filter_thresholds["person"]
        assert back.successful
        assert node.pipeline.core.filter.config.threshold("person") == calibrated
        bad = node.set_parameters([Parameter("filter.threshold.person", value=1.5)])[0]
        assert not bad.successful
        restart = node.set_parameters([Parameter("tracking.confirm_hits", value=0)])[0]
        assert not restart.successful and "confirm_hits" in restart.reason
    finally:
        node.shutdown()
        node.destroy_node()


def test_a_camera_rig_node_matches_replay_with_per_camera_topics_and_parameters(ros, surround_bag):
    rig = {"cameras.names": "front,rear", "cameras.rear.score_threshold": 0.45}
    messages = [r for r in iter_bag(surround_bag) if not r.topic.startswith("/ground_truth")]
    params = load_parameters(REPO / "config" / "surround.yaml").with_overrides(rig)
    replay = Pipeline(params, RosbagsFactory(TYPESTORE))
    replay.keep_results = True
    for rec in messages:
        replay.process(rec.topic, rec.msg)
    replay.finish()

    overrides = [Parameter("use_sim_time", value=True)]
    overrides += [Parameter(k, value=v) for k, v in rig.items()]
    node = PerceptionNode(parameter_overrides=overrides)
    try:
        # Each rig camera's overrides are declared, with their description.
        assert node.get_parameter("cameras.rear.score_threshold").value == 0.45
        assert node.get_parameter("cameras.front.score_threshold").value == -1.0
        assert node.pipeline.cores["rear"].min_score == 0.45
        topics = {p.topic_name for p in node.publishers}
        assert {"/front/detections_2d", "/rear/scene", "/scene", "/objects_3d"} <= topics
        subscribed = {s.topic_name for s in node.subscriptions}
        assert "/cameras/rear/image_raw/compressed" in subscribed
        assert "/cameras/left/image_raw/compressed" not in subscribed  # not in this rig
        node.pipeline.keep_results = True
        images = {f"/cameras/{c}/image_raw/compressed" for c in ("front", "rear")}
        for rec in messages:
            node.on_message(rec.topic, to_rclpy(rec), camera=rec.topic in images)
            assert node.wait_idle(60), "the compute thread did not finish a frame"
        final = node.shutdown()
    finally:
        node.destroy_node()
    a, b = replay.results, node.pipeline.results
    assert len(a) == len(b) == 20  # 1 s of two 10 Hz cameras
    for x, y in zip(a, b, strict=True):
        assert x.camera_frame == y.camera_frame and _comparable(x) == _comparable(y)
    assert len(replay.merged_scenes) == len(node.pipeline.merged_scenes) == 10
    for x, y in zip(replay.merged_scenes, node.pipeline.merged_scenes, strict=True):
        assert {k: v for k, v in x.items() if k != "latency_ms"} == {
            k: v for k, v in y.items() if k != "latency_ms"
        }
    assert final["inputs"] == replay.accounting()
