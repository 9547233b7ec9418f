"""A camera rig end to end: the four-camera surround bag replayed with config/surround.yaml.

Each camera anchors its own frames and publishes under its name; the merged scene counts
each physical object once (duplicate rate 0 on the overlaps: the issue's goal), and every
input message is accounted once although every camera uses the lidar and radar.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from conftest import REPO
from multimodal_perception.replay import replay
from multimodal_perception.rig_eval import evaluate_rig
from multimodal_perception.ros_pkg.bag_io import iter_bag

CAMS = ("front", "left", "rear", "right")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rig_run(surround_bag, tmp_path_factory):
    out = tmp_path_factory.mktemp("rig_replay")
    result = replay([surround_bag], out, REPO / "config" / "surround.yaml", pictures=0,
                    progress=False)  # fmt: skip
    topics: dict[str, list] = defaultdict(list)
    for rec in iter_bag(out / "output.mcap"):
        if rec.topic.startswith("/multimodal_perception/"):
            topics[rec.topic].append(rec.msg)
    return out, result.report, topics


def test_every_camera_publishes_under_its_name_and_the_merged_scene_at_the_top(
    surround_bag, rig_run
):
    _, report, topics = rig_run
    frames = Counter(
        rec.topic.split("/")[2]
        for rec in iter_bag(surround_bag)
        if rec.topic.endswith("image_raw/compressed")
    )
    assert set(frames) == set(CAMS)
    assert report["frames"] == sum(frames.values())
    for cam in CAMS:
        for name in ("detections_2d", "rejected_2d", "objects_3d", "scene", "scene_text"):
            msgs = topics[f"/multimodal_perception/{cam}/{name}"]
            assert len(msgs) == frames[cam], (cam, name)
        scene = json.loads(topics[f"/multimodal_perception/{cam}/scene"][-1].data)
        assert scene["camera_frame_id"] == f"camera_{cam}_optical"
    merged = [json.loads(m.data) for m in topics["/multimodal_perception/scene"]]
    assert len(merged) == frames["front"]  # on the merging camera's frames
    assert len(topics["/multimodal_perception/objects_3d"]) == frames["front"]
    last = merged[-1]
    assert set(last["cameras"]) == set(CAMS)  # every camera's newest frame is in it
    assert {o["camera"] for m in merged for o in m["objects"]} == set(CAMS)


def test_every_input_is_accounted_once_though_every_camera_uses_the_lidar(rig_run):
    _, report, _ = rig_run
    for topic, row in report["inputs"].items():
        assert row["in"] == row["used"] + sum(row["dropped"].values()), (topic, row)
    lidar = report["inputs"]["/lidar/points"]
    assert lidar["used"] == lidar["in"]  # 10 Hz lidar, 4 cameras: each sweep used, once


def test_the_merged_scene_counts_each_object_once(surround_bag, rig_run):
    out, _, topics = rig_run
    scores = evaluate_rig(surround_bag, out, CAMS)
    merged = scores.merged
    # The goal on the overlaps: no object reported twice.
    assert merged.duplicate_rate == 0.0 and merged.gt_reported_twice == 0
    # Measured 2026-12-02 (embedded tiny models, this 1 s bag): recall 0.470 (31 of 66
    # visible GT object-frames), precision 0.477; the margin is for other CPUs' pixels.
    assert merged.recall >= 0.35 and merged.precision >= 0.35
    # Objects in two views are one track: some merged objects were seen by two cameras.
    seen_by = [o["seen_by"] for m in topics["/multimodal_perception/scene"]
               for o in (json.loads(m.data)["objects"]) if o["track_id"] is not None]  # fmt: skip
    assert any(len(s) >= 2 for s in seen_by)
