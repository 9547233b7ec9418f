"""The synthetic surround rig (sim/surround.py) and its scoring (rig_eval.py).

One 1-second surround bag of urban_crossing from t = 10.5 s (the bus passes the stopped
ego on the left, pedestrians cross in front): its stamps, calibration and ground truth
are checked against each other, and the rig evaluator is run on output bags written
from that ground truth, with known answers (perfect, duplicated, half rejected, ...).
"""

from __future__ import annotations

import json
from collections import defaultdict

import cv2
import numpy as np
import pytest

from conftest import REPO, SURROUND_SECONDS, SURROUND_START_S
from multimodal_perception.cli import main
from multimodal_perception.config import load_parameters
from multimodal_perception.fusion.projection import project_points
from multimodal_perception.fusion.transforms import TransformBuffer
from multimodal_perception.rig import rig_cameras
from multimodal_perception.rig_eval import evaluate_rig, surround_cameras
from multimodal_perception.ros_pkg.bag_io import BagWriter, bag_metadata, iter_bag
from multimodal_perception.ros_pkg.camera_info import camera_info_to_model
from multimodal_perception.ros_pkg.outputs import (
    detection2d_array,
    detection2d_array_to_arrays,
    string_msg,
)
from multimodal_perception.ros_pkg.pointcloud import cloud_to_xyz
from multimodal_perception.ros_pkg.stamps import stamp_to_ns
from multimodal_perception.ros_pkg.tf_msgs import tf_message_to_transforms
from multimodal_perception.sim.surround import SurroundConfig, write_surround_bag
from multimodal_perception.sim.world import VEHICLE_RIG

CAMS = ("front", "left", "rear", "right")
YAW = {"front": 0.0, "left": 90.0, "rear": 180.0, "right": -90.0}
SECONDS, START = SURROUND_SECONDS, SURROUND_START_S
pytestmark = pytest.mark.slow  # the module's bag takes ~20 s to render on 2 shared cores


@pytest.fixture(scope="module")
def bag(surround_bag):
    return surround_bag  # conftest: rendered once per session (test_rig.py uses it too)


@pytest.fixture(scope="module")
def gt(bag):
    """Everything in the bag, by camera and stamp."""
    d = defaultdict(dict)
    tf = TransformBuffer()
    for rec in iter_bag(bag):
        parts = rec.topic.strip("/").split("/")
        if rec.topic in ("/tf", "/tf_static"):
            for t in tf_message_to_transforms(rec.msg):
                tf.set_transform(t, static=rec.topic == "/tf_static")
            continue
        stamp = stamp_to_ns(rec.msg.header.stamp) if hasattr(rec.msg, "header") else None
        if rec.topic.endswith("/scene"):
            stamp = json.loads(rec.msg.data)["stamp_ns"]
        assert stamp is None or rec.log_time_ns == stamp, rec.topic  # log time = header time
        key = (parts[0], parts[1]) if parts[0] in ("cameras", "ground_truth") else parts[0]
        d[(key, parts[-1])][stamp] = rec.msg
    d["tf"] = tf
    return d


def _yaw(det) -> float:
    q = det.bbox.center.orientation
    return 2.0 * np.arctan2(q.z, q.w)


def test_topics_stamps_and_metadata(bag, gt):
    topics = {r.topic for r in iter_bag(bag)}
    expected = {"/lidar/points", "/radar/points", "/tf", "/tf_static"}
    for n in CAMS:
        expected |= {f"/cameras/{n}/image_raw/compressed", f"/cameras/{n}/camera_info"}
        expected |= {f"/ground_truth/{n}/{t}" for t in ("boxes_2d", "objects_3d", "scene")}
    assert topics == expected
    assert surround_cameras(bag) == list(CAMS)
    config = json.loads(bag_metadata(bag)["mmp.synthetic_config"])
    assert config["surround"] is True and config["start_s"] == START
    stamps = {n: sorted(gt[(("cameras", n), "compressed")]) for n in CAMS}
    assert all(len(s) == 10 for s in stamps.values())
    for k, n in enumerate(CAMS):  # each camera fires 25 ms after the previous one
        lag_ms = (np.array(stamps[n]) - np.array(stamps["front"])) / 1e6
        assert np.all(np.abs(lag_ms - 25.0 * k) < 6.0), (n, lag_ms)
        for topic in ("compressed", "camera_info", "boxes_2d"):
            group = "ground_truth" if topic == "boxes_2d" else "cameras"
            msgs = gt[((group, n), topic)]
            assert sorted(msgs) == stamps[n], (n, topic)
            assert {m.header.frame_id for m in msgs.values()} == {f"camera_{n}_optical"}
        assert sorted(gt[(("ground_truth", n), "objects_3d")]) == stamps[n]
    assert len({s for v in stamps.values() for s in v}) == 40  # no two cameras share a stamp
    # Each camera sees 110 degrees horizontally through its distortion (neighbours: 20).
    info = camera_info_to_model(next(iter(gt[(("cameras", "left"), "camera_info")].values())))
    assert (info.width, info.height, info.distortion_model) == (640, 384, "plumb_bob")
    assert np.allclose(info.D, VEHICLE_RIG.distortion)
    edges = np.array([[[-0.5, info.K[1, 2]]], [[info.width - 0.5, info.K[1, 2]]]])
    x = cv2.undistortPoints(edges, info.K, info.D).reshape(-1, 2)[:, 0]
    assert np.allclose(np.degrees(np.arctan(np.abs(x))), 55.0, atol=0.3)


def test_optical_frames_follow_rep103(gt):
    """Optical z (viewing axis) along the camera's yaw, pitched down 3 degrees; optical x to
    the camera's right; base_link is x forward, y left, z up."""
    tf = gt["tf"]
    for n in CAMS:
        R = tf.lookup("base_link", f"camera_{n}_optical")[:3, :3]
        a, p = np.radians(YAW[n]), np.radians(3.0)
        axis = [np.cos(a) * np.cos(p), np.sin(a) * np.cos(p), -np.sin(p)]
        assert np.allclose(R[:, 2], axis, atol=1e-6), n
        assert np.allclose(R[:, 0], [np.sin(a), -np.cos(a), 0.0], atol=1e-6), n


def test_gt_centres_project_into_their_boxes_through_camera_info_and_tf(gt):
    tf, checked = gt["tf"], defaultdict(int)
    for n in CAMS:
        infos = gt[(("cameras", n), "camera_info")]
        for stamp, scene in gt[(("ground_truth", n), "scene")].items():
            boxes = detection2d_array_to_arrays(gt[(("ground_truth", n), "boxes_2d")][stamp])
            model = camera_info_to_model(infos[stamp])
            T_cam_odom = tf.lookup(f"camera_{n}_optical", "odom", stamp)
            objects = {str(o["track_id"]): o for o in json.loads(scene.data)["objects"]}
            for box, tid, vis in zip(boxes.boxes_xyxy, boxes.ids, boxes.scores, strict=True):
                o = objects[tid]
                if vis < 0.8 or o["truncated"]:
                    continue  # the centre of a hidden or cut object may lie outside its box
                proj = project_points(np.array([o["center_odom"]]), T_cam_odom, model)
                assert len(proj.uv) == 1, (n, tid)
                u, v = proj.uv[0]
                assert box[0] - 2 <= u <= box[2] + 2 and box[1] - 2 <= v <= box[3] + 2, (n, tid)
                checked[n] += 1
    print(f"GT centres checked per camera: {dict(checked)}")
    assert len(checked) >= 3 and sum(checked.values()) >= 30, dict(checked)


def test_objects_in_overlaps_are_boxed_by_both_neighbours(gt):
    tf, pairs, checked = gt["tf"], set(), 0
    for k in range(10):  # rig cycle k: one frame per camera
        frames = {n: sorted(gt[(("ground_truth", n), "boxes_2d")].items())[k] for n in CAMS}
        boxed = {n: set(detection2d_array_to_arrays(m).ids) for n, (_, m) in frames.items()}
        for a, b in (("front", "left"), ("left", "rear"), ("rear", "right"), ("right", "front")):
            for tid in boxed[a] & boxed[b]:
                pairs.add((a, b, tid))
                for n in (a, b):  # the object lies in both cameras' fields of view
                    stamp = frames[n][0]
                    objs = gt[(("ground_truth", n), "objects_3d")][stamp].detections
                    d = next(o for o in objs if o.id == tid)
                    T_base_cam = tf.lookup("base_link", f"camera_{n}_optical")
                    rel = np.array([d.bbox.center.position.x, d.bbox.center.position.y])
                    rel -= T_base_cam[:2, 3]
                    off = np.degrees(np.arctan2(rel[1], rel[0])) - YAW[n]
                    off = (off + 180.0) % 360.0 - 180.0
                    radius = np.hypot(d.bbox.size.x, d.bbox.size.y) / 2
                    if radius >= np.hypot(*rel):
                        continue  # the camera is within the object's footprint circle
                    reach = np.degrees(np.arcsin(radius / np.hypot(*rel)))
                    assert abs(off) <= 55.0 + reach, (n, tid, off, reach)
                    checked += 1
    # The bus (3) passes on the left (front, left and rear see it); pedestrian 9 crosses
    # at the front-right corner.
    assert {("front", "left", "3"), ("left", "rear", "3"), ("right", "front", "9")} <= pairs
    print(f"objects boxed by two neighbours: {sorted(pairs)}; {checked} bearings checked")
    assert checked >= 10


def test_lidar_lands_on_the_objects_each_camera_boxes(gt):
    tf, on_object = gt["tf"], defaultdict(int)
    scans = gt[("lidar", "points")]
    for n in CAMS:
        for stamp, msg in gt[(("ground_truth", n), "objects_3d")].items():
            lidar_stamp = min(scans, key=lambda s: abs(s - stamp))
            pts = cloud_to_xyz(scans[lidar_stamp])[0]
            model = camera_info_to_model(gt[(("cameras", n), "camera_info")][stamp])
            T_cam_lidar = tf.lookup(f"camera_{n}_optical", "lidar", lidar_stamp)
            proj = project_points(pts, T_cam_lidar, model)
            T_base_lidar = tf.lookup("base_link", "lidar")
            base = pts[proj.index] @ T_base_lidar[:3, :3].T + T_base_lidar[:3, 3]
            boxes = detection2d_array_to_arrays(gt[(("ground_truth", n), "boxes_2d")][stamp])
            by_id = {d.id: d for d in msg.detections}
            for box, tid, vis in zip(boxes.boxes_xyxy, boxes.ids, boxes.scores, strict=True):
                if min(box[2] - box[0], box[3] - box[1]) < 20 or vis < 0.5:
                    continue  # a sliver or mostly hidden: few beams reach it
                d, u, v = by_id[tid], proj.uv[:, 0], proj.uv[:, 1]
                inside = (u >= box[0]) & (u < box[2]) & (v >= box[1]) & (v < box[3])
                c = np.array([d.bbox.center.position.x, d.bbox.center.position.y])
                ca, sa = np.cos(_yaw(d)), np.sin(_yaw(d))
                rel = base[inside, :2] - c
                local = np.stack(
                    [ca * rel[:, 0] + sa * rel[:, 1], -sa * rel[:, 0] + ca * rel[:, 1]]
                )
                half = np.array([[d.bbox.size.x / 2 + 0.5], [d.bbox.size.y / 2 + 0.5]])
                hits = int(np.all(np.abs(local) <= half, axis=0).sum())
                assert hits >= 5, (n, tid, hits)
                on_object[n] += 1
    print(f"boxed objects with lidar points on them, per camera: {dict(on_object)}")
    assert set(on_object) == set(CAMS)


def test_config_and_cli_match_the_bag_and_generation_is_deterministic(tmp_path, bag):
    params = load_parameters(REPO / "config" / "surround.yaml")
    topics = {r.topic for r in iter_bag(bag, None)}
    cams = rig_cameras(params)
    assert [c.name for c in cams] == list(CAMS)
    assert all({c.compressed_topic, c.info_topic} <= topics for c in cams)
    a, b, c = (tmp_path / d / "bag" for d in "abc")
    args = ["make-bag", "--synthetic", "--surround", "--seconds", "0.1", "--out", str(a)]
    assert main(args) == 0
    write_surround_bag(b, SurroundConfig(seconds=0.1))
    write_surround_bag(c, SurroundConfig(seconds=0.1, seed=1))
    assert (a / "bag.mcap").read_bytes() == (b / "bag.mcap").read_bytes()
    assert (a / "bag.mcap").read_bytes() != (c / "bag.mcap").read_bytes()


# ---- the evaluator, on outputs written from the ground truth ----


def _write_output(
    root,
    gt,
    *,
    dup_m=None,
    reject_every=0,
    fp_at=None,
    alt_ids=False,
    only_boxed=False,
    relabel=None,
):
    """A replay-like ``root/output/output.mcap``: per camera the GT boxes as detections
    (every ``reject_every``-th one rejected); the merged scene on front's stamps with every
    GT 3D object (``only_boxed``: those boxed in the last 100 ms), each one ``dup_m`` m
    away a second time, plus a false object at ``fp_at``; track ids alternate between
    frames with ``alt_ids``; ``relabel`` renames merged objects' classes."""
    boxed = [
        (s, set(detection2d_array_to_arrays(m).ids))
        for n in CAMS
        for s, m in gt[(("ground_truth", n), "boxes_2d")].items()
    ]
    with BagWriter(root / "output") as w:
        for n in CAMS:
            for stamp, m in gt[(("ground_truth", n), "boxes_2d")].items():
                g = detection2d_array_to_arrays(m)
                rej = np.arange(len(g.ids)) % max(reject_every, 1) == 0
                rej &= reject_every > 0
                for topic, sel in (("detections_2d", ~rej), ("rejected_2d", rej)):
                    msg = detection2d_array(
                        w.factory,
                        stamp_ns=stamp,
                        frame_id=g.frame_id,
                        boxes_xyxy=g.boxes_xyxy[sel],
                        class_ids=[c for c, keep in zip(g.class_ids, sel, strict=True) if keep],
                        scores=[0.9] * int(sel.sum()),
                    )
                    w.write(f"/multimodal_perception/{n}/{topic}", msg, stamp)
        front = sorted(gt[(("ground_truth", "front"), "objects_3d")].items())
        for k, (stamp, m) in enumerate(front):
            seen = set().union(*(ids for s, ids in boxed if stamp - 100_000_000 <= s <= stamp))
            objs = []
            for d in m.detections:
                if only_boxed and d.id not in seen:
                    continue
                p = d.bbox.center.position
                tid = int(d.id) + (2000 if alt_ids and k % 2 else 1000)
                cls = d.results[0].hypothesis.class_id
                cls = (relabel or {}).get(cls, cls)
                objs.append({"track_id": tid, "class": cls, "center": [p.x, p.y, p.z]})
                if dup_m is not None:
                    twin = {"track_id": tid + 500, "center": [p.x + dup_m, p.y, p.z]}
                    objs.append({**objs[-1], **twin})
            if fp_at is not None:
                objs.append({"track_id": 9999, "class": "car", "center": list(fp_at)})
            scene = {"schema": "mmp.scene/1", "stamp_ns": stamp, "objects": objs}
            w.write("/multimodal_perception/scene", string_msg(w.factory, json.dumps(scene)), stamp)
    return root / "output"


def _n_boxes(gt, n):
    return sum(len(m.detections) for m in gt[(("ground_truth", n), "boxes_2d")].values())


def test_rig_eval_perfect_output(tmp_path, bag, gt):
    scores = evaluate_rig(bag, _write_output(tmp_path / "out", gt))
    for n in CAMS:
        s = scores.cameras[n]
        assert s.frames == 10 and sum(c.n_gt for c in s.after.scores.values()) == _n_boxes(gt, n)
        for scorer in (s.before, s.after):
            assert scorer.total_recall() == 1.0 and scorer.total_precision() == 1.0, n
    m = scores.merged
    assert (m.frames, m.frames_without_gt) == (10, 0)
    assert m.recall == 1.0 and m.precision == 1.0 and m.duplicate_rate == 0.0
    assert m.duplicates == m.gt_reported_twice == 0
    # GT objects within 120 m that no camera boxed (behind buildings) were output too:
    # they are ignored, neither true nor false.
    in_range = sum(
        len(x.detections) for x in gt[(("ground_truth", "front"), "objects_3d")].values()
    )
    assert m.ignored == in_range - m.gt > 0
    assert m.ids_per_object() == (1.0, 1)
    # Only the boxed objects output: still every visible object found.
    only = evaluate_rig(bag, _write_output(tmp_path / "only", gt, only_boxed=True)).merged
    assert (only.recall, only.precision, only.gt, only.ignored) == (1.0, 1.0, m.gt, 0)


def test_rig_eval_duplicates_rejections_false_objects_and_fragmentation(tmp_path, bag, gt):
    dup = evaluate_rig(bag, _write_output(tmp_path / "dup", gt, dup_m=0.5)).merged
    assert dup.recall == 1.0 and dup.duplicate_rate == 0.5 and dup.precision == 0.5
    assert dup.duplicates == dup.gt_reported_twice == dup.gt > 0
    assert dup.ids_reported_twice >= {3, 9}
    # 2.5 m away a second report is no duplicate of the object but a false positive.
    far = evaluate_rig(bag, _write_output(tmp_path / "far", gt, dup_m=2.5)).merged
    assert far.duplicates == 0 and far.false_positives > 0 and far.recall == 1.0

    half = evaluate_rig(bag, _write_output(tmp_path / "half", gt, reject_every=2))
    for n in CAMS:
        s = half.cameras[n]
        # Boxes 0, 2, 4, ... of each frame were rejected: n // 2 of n kept.
        kept = sum(len(m.detections) // 2 for m in gt[(("ground_truth", n), "boxes_2d")].values())
        assert s.before.total_recall() == 1.0 and s.before.total_precision() == 1.0
        assert s.after.total_recall() == pytest.approx(kept / _n_boxes(gt, n)), n
        if kept:
            assert s.after.total_precision() == 1.0, n

    fp = evaluate_rig(bag, _write_output(tmp_path / "fp", gt, fp_at=(0.0, 0.0, 0.8), alt_ids=True))
    m = fp.merged
    assert m.false_positives == m.frames == 10 and m.duplicates == 0
    assert m.precision == pytest.approx(m.gt / (m.gt + 10))
    # Track ids alternate between frames: every GT object seen twice or more had two ids.
    mean_ids, max_ids = m.ids_per_object()
    assert max_ids == 2 and mean_ids > 1.5

    # Classes match by group: a cyclist reported as a bicycle is found, a bus reported as
    # a person is not.
    same = evaluate_rig(bag, _write_output(tmp_path / "bike", gt, relabel={"cyclist": "bicycle"}))
    assert same.merged.recall == 1.0 and same.merged.precision == 1.0
    other = evaluate_rig(bag, _write_output(tmp_path / "bus", gt, relabel={"bus": "person"}))
    assert other.merged.recall < 1.0 and other.merged.precision < 1.0


def test_mmp_eval_scores_a_surround_replay(tmp_path, bag, gt, capsys):
    out = _write_output(tmp_path, gt, dup_m=0.5)  # a replay's --out folder
    assert main(["eval", str(out), "--input", str(bag)]) == 0
    text = capsys.readouterr().out
    assert "surround rig" in text and "duplicate rate 0.500" in text
    assert all(f"\n  {n:8}" in text for n in CAMS)
    (out / "report.json").write_text(json.dumps({"bags": [str(bag)]}))  # as replay writes
    assert main(["eval", str(out)]) == 0
    assert "duplicate rate 0.500" in capsys.readouterr().out
