"""Bags built from the real recordings in ../shared/data read back exactly."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import CACHE, DATA, need_data
from multimodal_perception.bagbuild import TOPICS, build_real_bag
from multimodal_perception.datasets.kitti import read_velodyne_bin
from multimodal_perception.ros_pkg.bag_io import BagWriter, bag_metadata, iter_bag
from multimodal_perception.ros_pkg.camera_info import camera_info_to_model
from multimodal_perception.ros_pkg.image import image_to_bgr8
from multimodal_perception.ros_pkg.outputs import string_msg
from multimodal_perception.ros_pkg.pointcloud import cloud_to_xyz
from multimodal_perception.ros_pkg.radar import radar_cloud_to_points

SOURCES = {
    "kitti_raw": ("kitti_raw_2011_09_26/velodyne_points", "kitti_raw_2011_09_26/image_02", 4),
    "kitti_object": ("kitti_object/training/velodyne", "kitti_object/training/image_2", 4),
    "vod": ("view_of_delft/lidar/training/velodyne", "view_of_delft/lidar/training/image_2", 4),
}


@pytest.fixture(scope="module")
def real_bags():
    need_data()
    root = CACHE / "test_bags"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return {name: (build_real_bag(name, DATA, root / name), root / name) for name in SOURCES}


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", sorted(SOURCES))
def test_clouds_have_exact_source_point_counts_and_values(real_bags, dataset):
    counts, bag = real_bags[dataset]
    lidar_dir, image_dir, _ = SOURCES[dataset]
    bins = sorted((DATA / lidar_dir).glob("*.bin"))
    images = sorted((DATA / image_dir).glob("*.*"))
    clouds = [r.msg for r in iter_bag(bag, [TOPICS["lidar"]])]
    assert len(clouds) == len(bins) == counts[TOPICS["lidar"]]
    for msg, path in zip(clouds, bins, strict=True):
        src = read_velodyne_bin(path)
        xyz, _ = cloud_to_xyz(msg)
        assert msg.width * msg.height == len(src) == len(xyz)
        np.testing.assert_array_equal(xyz, src[:, :3])
    first = next(r.msg for r in iter_bag(bag, [TOPICS["image"]]))
    np.testing.assert_array_equal(image_to_bgr8(first), cv2.imread(str(images[0])))


@pytest.mark.real_data
def test_vod_radar_and_ground_truth(real_bags):
    _, bag = real_bags["vod"]
    radar = [r.msg for r in iter_bag(bag, [TOPICS["radar"]])]
    src = read_velodyne_bin(DATA / "view_of_delft/radar/training/velodyne/00549.bin", 7)
    pts = radar_cloud_to_points(radar[0])
    assert len(pts) == len(src)
    np.testing.assert_array_equal(pts.radial_velocity, src[:, 5])  # v_r_compensated
    gt = [r.msg for r in iter_bag(bag, [TOPICS["gt_objects"]])]
    labels = (DATA / "view_of_delft/lidar/training/label_2/00549.txt").read_text().splitlines()
    assert len(gt[0].detections) == len(labels)
    meta = json.loads(bag_metadata(bag)["mmp.timing_model"])
    assert meta["sensors"]["radar"]["offset_s"] == -0.02
    # Stamps follow the recorded timing model.
    stamps = {r.topic: r.log_time_ns for r in iter_bag(bag) if r.topic != TOPICS["tf_static"]}
    assert stamps[TOPICS["image"]] - stamps[TOPICS["radar"]] == 20_000_000


@pytest.mark.real_data
def test_camera_info_projects_lidar_into_the_image(real_bags):
    _, bag = real_bags["kitti_raw"]
    info = camera_info_to_model(next(r.msg for r in iter_bag(bag, [TOPICS["camera_info"]])))
    assert (info.width, info.height) == (1242, 375) and info.frame_id == "camera_optical"
    tf = next(r.msg for r in iter_bag(bag, [TOPICS["tf_static"]]))
    frames = {(t.header.frame_id, t.child_frame_id) for t in tf.transforms}
    assert frames == {("base_link", "lidar"), ("lidar", "camera_optical")}


def test_sqlite3_storage_and_corrupt_message_is_reported(tmp_path, typestore):
    bag = tmp_path / "bag"
    with BagWriter(bag, storage="sqlite3") as writer:
        writer.write("/chatter", string_msg(writer.factory, "hello"), 10)
        conn = writer._connections["/chatter"]
        writer._writer.write(conn, 20, b"\x00\x01\x00\x00\xff\xff\xff\x7f")  # length 2^31-1
    records = list(iter_bag(bag))
    assert records[0].msg.data == "hello" and records[0].error is None
    assert records[1].msg is None and records[1].error is not None
