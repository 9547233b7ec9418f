"""The pipeline and the replay job on the shipped synthetic bag, and degraded inputs."""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from conftest import REPO
from multimodal_perception.config import load_parameters
from multimodal_perception.describe import SCENE_SCHEMA, describe_scene
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.replay import replay
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

SHIPPED = REPO / "bags" / "urban_crossing_5s"
OUT_TYPES = {
    "/multimodal_perception/detections_2d": "vision_msgs/msg/Detection2DArray",
    "/multimodal_perception/rejected_2d": "vision_msgs/msg/Detection2DArray",
    "/multimodal_perception/objects_3d": "vision_msgs/msg/Detection3DArray",
    "/multimodal_perception/scene": "std_msgs/msg/String",
    "/multimodal_perception/scene_text": "std_msgs/msg/String",
    "/multimodal_perception/markers": "visualization_msgs/msg/MarkerArray",
    "/multimodal_perception/segmentation": "sensor_msgs/msg/Image",
    "/multimodal_perception/label_info": "vision_msgs/msg/LabelInfo",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    return [replay([SHIPPED], root / f"run{i}", pictures=3, progress=False) for i in (1, 2)]


def test_every_input_message_is_accounted_for(runs):
    report = json.loads((runs[0].out_dir / "report.json").read_text())
    assert report["inputs_balanced"]
    counts = {r.topic: 0 for r in iter_bag(SHIPPED)}
    for r in iter_bag(SHIPPED):
        counts[r.topic] += 1
    for topic, row in report["inputs"].items():
        if row["in"] == 0:
            continue
        assert row["in"] == counts[topic], topic
        assert row["in"] == row["used"] + sum(row["dropped"].values()), topic
    camera = report["inputs"]["/camera/image_raw/compressed"]
    assert camera["used"] == 50 and report["frames"] == 50 and report["scene_messages"] == 50
    assert report["inputs"]["/radar/points"]["dropped"] == {"no_anchor": 15}
    assert set(report["not_subscribed"]) == {t for t in counts if t.startswith("/ground_truth")}
    assert report["models"]["embedded_default"] is True


def test_output_bag_reads_back_with_declared_types(runs):
    seen = {}
    for rec in iter_bag(runs[0].out_dir / "output.mcap"):
        assert rec.error is None, rec.topic
        seen.setdefault(rec.topic, rec.msgtype)
    for topic, msgtype in OUT_TYPES.items():
        assert seen.get(topic) == msgtype, topic
    inputs = {r.topic for r in iter_bag(SHIPPED)}
    assert inputs <= set(seen)  # the inputs are in the same file


def _content(run) -> list[tuple[str, int, str]]:
    out = []
    for rec in iter_bag(run.out_dir / "output.mcap"):
        if rec.topic == "/multimodal_perception/scene":
            scene = json.loads(rec.msg.data)
            scene.pop("latency_ms")  # wall clock
            out.append((rec.topic, rec.log_time_ns, json.dumps(scene, sort_keys=True)))
        elif rec.topic == "/diagnostics":
            values = [
                (s.name, [(v.key, v.value) for v in s.values if "ms_median" not in v.key])
                for s in rec.msg.status
            ]
            out.append((rec.topic, rec.log_time_ns, repr(values)))
        else:
            typestore = get_project_typestore()
            out.append(
                (
                    rec.topic,
                    rec.log_time_ns,
                    bytes(typestore.serialize_cdr(rec.msg, rec.msgtype)).hex(),
                )
            )
    return out


def test_two_runs_are_identical_apart_from_wall_clock(runs):
    a, b = _content(runs[0]), _content(runs[1])
    assert len(a) == len(b) and a == b
    ra = json.loads((runs[0].out_dir / "report.json").read_text())
    rb = json.loads((runs[1].out_dir / "report.json").read_text())
    ra.pop("timing"), rb.pop("timing")
    ra.pop("bags"), rb.pop("bags")
    assert ra == rb


def test_scene_messages_follow_the_schema(runs):
    scenes = [
        json.loads(r.msg.data)
        for r in iter_bag(runs[0].out_dir / "output.mcap", ["/multimodal_perception/scene"])
    ]
    assert len(scenes) == 50
    for scene in scenes:
        jsonschema.validate(scene, SCENE_SCHEMA)
    assert any(o["confirmed"] and "radar" in o["sensors"] for s in scenes for o in s["objects"])
    assert all(s["tracking_frame"] == "odom" and not s["degraded"] for s in scenes[5:])


CLASS_WORDS = {
    "car": "car",
    "cars": "car",
    "truck": "truck",
    "trucks": "truck",
    "bus": "bus",
    "buses": "bus",
    "person": "person",
    "people": "person",
    "cyclist": "cyclist",
    "cyclists": "cyclist",
}


def test_scene_text_names_tracked_classes_and_only_present_ones(runs):
    out = runs[0].out_dir / "output.mcap"
    truth = {
        json.loads(r.msg.data)["stamp_ns"]: json.loads(r.msg.data)
        for r in iter_bag(out, ["/ground_truth/scene"])
    }
    scenes = {
        r.log_time_ns: json.loads(r.msg.data)
        for r in iter_bag(out, ["/multimodal_perception/scene"])
    }
    texts = {
        r.log_time_ns: r.msg.data for r in iter_bag(out, ["/multimodal_perception/scene_text"])
    }
    checked = 0
    for stamp, text in texts.items():
        named = {CLASS_WORDS[w] for w in re.findall(r"[a-z]+", text) if w in CLASS_WORDS}
        tracked = {o["class"] for o in scenes[stamp]["objects"] if o["confirmed"]}
        if not tracked:  # "No confirmed objects yet; tentative: ..." names the tentative ones
            tracked = {o["class"] for o in scenes[stamp]["objects"]}
        in_view = {o["detection_class"] for o in truth[stamp]["objects"] if o["visible_pixels"] > 0}
        assert named == tracked, (text, tracked)
        assert named <= in_view, (text, in_view)
        checked += bool(named)
    assert checked >= 40
    print(f"e.g. {texts[sorted(texts)[25]]!r}")


def test_report_and_pictures_are_written(runs):
    out = runs[0].out_dir
    md = (out / "report.md").read_text()
    assert "| /lidar/points | 50 | 50 | - |" in md
    assert (out / "plots.png").stat().st_size > 10_000
    pictures = sorted(out.glob("frame_*.jpg"))
    assert len(pictures) == 3


def _pipeline(**overrides) -> Pipeline:
    params = load_parameters(REPO / "config" / "perception.yaml").with_overrides(overrides)
    return Pipeline(params, RosbagsFactory(get_project_typestore()))


def _feed(pipeline: Pipeline, skip: tuple[str, ...] = (), mutate=None) -> list:
    outputs = []
    for rec in iter_bag(SHIPPED):
        if rec.topic in skip:
            continue
        msg = mutate(rec.topic, rec.msg) if mutate else rec.msg
        outputs += pipeline.process(rec.topic, msg)
    return outputs + pipeline.finish()


def _scenes(outputs) -> list[dict]:
    return [json.loads(o.msg.data) for o in outputs if o.topic == "scene"]


def test_camera_only_degrades_and_says_so():
    outputs = _feed(_pipeline(), skip=("/lidar/points", "/radar/points"))
    scenes = _scenes(outputs)
    assert len(scenes) == 50
    assert all({"no_lidar", "no_radar"} <= set(s["degraded"]) for s in scenes)
    objs = [o for s in scenes for o in s["objects"]]
    assert objs and {o["source"] for o in objs} == {"camera_only"}
    assert all(o["sensors"] == ["camera"] for o in objs)


def test_camera_and_lidar_without_radar_or_odometry():
    outputs = _feed(_pipeline(), skip=("/radar/points", "/tf"))
    scenes = _scenes(outputs)
    assert len(scenes) == 50
    assert all("no_radar" in s["degraded"] and "no_odometry" in s["degraded"] for s in scenes)
    assert any(o["source"] == "lidar" for s in scenes for o in s["objects"])
    assert all(s["tracking_frame"] == "base_link" for s in scenes)


def test_missing_camera_info_and_corrupt_messages_are_counted_not_fatal():
    def corrupt(topic, msg):
        if topic == "/lidar/points" and msg.header.stamp.nanosec % 3 == 0:
            msg.point_step = 4  # smaller than its fields
        if topic == "/camera/image_raw/compressed" and msg.header.stamp.nanosec % 7 == 0:
            msg.data = np.frombuffer(b"\xff\xd8 not a jpeg" * 20, np.uint8).copy()
        return msg

    pipeline = _pipeline()
    outputs = _feed(pipeline, skip=("/camera/camera_info",), mutate=corrupt)
    scenes = _scenes(outputs)
    assert scenes and all("no_camera_info" in s["degraded"] for s in scenes)
    acc = pipeline.accounting()
    assert acc["/lidar/points"]["dropped"].get("bad_layout", 0) > 0
    assert acc["/camera/image_raw/compressed"]["dropped"].get("bad_layout", 0) > 0
    for topic, row in acc.items():
        assert row["in"] == row["used"] + sum(row["dropped"].values()), topic


def test_time_going_backwards_resets_and_continues():
    pipeline = _pipeline()
    records = [r for r in iter_bag(SHIPPED)]
    outputs = []
    for rec in records + records:  # the bag played twice: a loop
        outputs += pipeline.process(rec.topic, rec.msg)
    outputs += pipeline.finish()
    assert pipeline.sync.resets == 1
    assert len(_scenes(outputs)) >= 95
    for row in pipeline.accounting().values():
        assert row["in"] == row["used"] + sum(row["dropped"].values())


def test_chinese_description_is_grounded():
    scene = {
        "objects": [
            {
                "confirmed": True,
                "class": "car",
                "track_id": 3,
                "range_m": 12.3,
                "bearing_deg": 5.0,
                "speed_mps": 4.0,
                "range_rate_mps": -3.5,
            },
            {
                "confirmed": True,
                "class": "person",
                "track_id": 7,
                "range_m": 8.0,
                "bearing_deg": 40.0,
                "speed_mps": 1.2,
                "range_rate_mps": 0.0,
            },
            {
                "confirmed": False,
                "class": "bus",
                "track_id": 9,
                "range_m": 5.0,
                "bearing_deg": 0.0,
                "speed_mps": None,
                "range_rate_mps": None,
            },
        ]
    }
    en = describe_scene(scene)
    zh = describe_scene(scene, "zh")
    assert en.startswith("1 car and 1 person in view.") and "bus" not in en
    assert "person #7 8.0 m ahead-left" in en and "car #3 is approaching at 3.5 m/s" in en
    assert "汽车" in zh and "行人#7在左前方8.0米" in zh and "公交车" not in zh
    assert en.endswith("1 more tentative.") and zh.endswith("另有1个待确认目标。")
    # Only tentative objects: said so, never "No objects detected" while objects publish.
    only_tentative = {"objects": [o for o in scene["objects"] if not o["confirmed"]] * 2}
    assert describe_scene(only_tentative) == "No confirmed objects yet; tentative: 2 buses."
    assert describe_scene({"objects": []}) == "No objects detected."


def test_bad_parameters_are_refused():
    from multimodal_perception.config import ParameterError

    with pytest.raises(ParameterError, match=r"detector\.tile_overlap=0\.95"):
        _pipeline(**{"detector.tile_overlap": 0.95})
    with pytest.raises(ParameterError, match=r"sync\.anchor"):
        _pipeline(**{"sync.anchor": "sonar"})


def test_replay_reads_sqlite3_and_ros1_bags(tmp_path):
    from rosbags.convert import convert
    from rosbags.typesys import Stores, get_typestore

    from multimodal_perception.ros_pkg.bag_io import BagWriter

    records = [r for r in iter_bag(SHIPPED) if not r.topic.startswith("/ground_truth")][:300]
    with BagWriter(tmp_path / "sqlite", storage="sqlite3") as w:
        for r in records:
            w.write(r.topic, r.msg, r.log_time_ns)
    # rosbags' converter writes the ROS 1 bag (ROS 1 message layouts, e.g. Header.seq).
    ros1 = get_typestore(Stores.ROS1_NOETIC)
    convert(
        [tmp_path / "sqlite"],
        tmp_path / "bag1.bag",
        "",
        0,
        None,
        "none",
        get_project_typestore(),
        ros1,
        [],
        [],
        [],
        [],
    )
    for bag in (tmp_path / "sqlite", tmp_path / "bag1.bag"):
        result = replay([bag], tmp_path / f"out_{bag.stem}", pictures=0, progress=False)
        assert result.report["frames"] >= 10, bag
        assert result.report["inputs_balanced"]


def test_any_sensor_can_anchor_frames_and_the_image_stays_the_frame_time():
    results = {}
    for anchor in ("camera", "lidar"):
        params = load_parameters(REPO / "config" / "perception.yaml").with_overrides(
            {"sync.anchor": anchor}
        )
        pipeline = Pipeline(params, RosbagsFactory(get_project_typestore()))
        pipeline.keep_results = True
        for rec in iter_bag(SHIPPED):
            pipeline.process(rec.topic, rec.msg)
        pipeline.finish()
        results[anchor] = {r.stamp_ns: r for r in pipeline.results}
        rows = pipeline.accounting()
        assert all(r["in"] == r["used"] + sum(r["dropped"].values()) for r in rows.values())
    by_camera, by_lidar = results["camera"], results["lidar"]
    # Lidar-anchored frames are the camera images nearest each sweep, stamped as the image.
    assert len(by_lidar) >= 48 and set(by_lidar) <= set(by_camera)
    same = 0
    for stamp, r in by_lidar.items():
        np.testing.assert_array_equal(r.detections.boxes, by_camera[stamp].detections.boxes)
        assert r.scene["sensors"]["lidar"]["present"]
        same += r.kept == by_camera[stamp].kept
    assert same >= 0.9 * len(by_lidar)


def test_the_output_folder_is_a_rosbag2_bag(runs):
    from rosbags.highlevel import AnyReader

    out = runs[0].out_dir
    with AnyReader([out]) as reader:  # the folder, as `ros2 bag play DIR` opens it
        topics = {c.topic for c in reader.connections}
        assert "/multimodal_perception/scene" in topics and "/lidar/points" in topics
        assert reader.message_count > 600


def test_overlays_draw_rejected_boxes_with_their_reason():
    """Every rejected box is drawn (grey, dashed) with its reason, not only kept ones."""
    from multimodal_perception.overlay import draw_overlay

    image = np.zeros((120, 200, 3), np.uint8)
    scene = {"objects": []}
    plain = draw_overlay(image, scene)
    drawn = draw_overlay(image, scene, rejected=[(np.array([20.0, 20, 120, 80]), "inconsistent")])
    assert not plain.any()
    edge = drawn[20, 20:120]  # the top edge: dashes, not a solid line
    assert 0.4 < (edge.sum(axis=1) > 0).mean() < 0.95
    assert drawn[82:96, 20:120].any()  # the reason under the box


def test_the_ros_clock_advances_sync_only_when_it_agrees_with_header_time():
    pipeline = _pipeline()
    groups = []
    for rec in iter_bag(SHIPPED):
        if rec.topic in ("/lidar/points", "/radar/points"):
            continue  # partners never come: frames wait for their timeout
        groups += pipeline.ingest(rec.topic, rec.msg)
        if pipeline.sync.pending()["camera"] >= 1:
            break
    newest = pipeline.sync.clock
    assert pipeline.advance(newest + 10**18) == []  # a device clock decades ahead: ignored
    assert pipeline.advance(newest + 50_000_000) == []  # within the timeout: still waiting
    emitted = pipeline.advance(newest + 400_000_000)  # past the 150 ms timeout
    assert emitted and emitted[0].missing == ("lidar", "radar")
