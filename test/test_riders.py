"""Riders: a person on (or at) a bicycle or motorcycle is one cyclist in 3D, both 2D boxes
stay (``fusion.objects.pair_riders``, ``rider_object``)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need_data
from multimodal_perception.datasets.kitti import object_calib, read_labels
from multimodal_perception.fusion.fusion3d import Object3D
from multimodal_perception.fusion.objects import pair_riders, rider_object


def _obj(x: float, y: float, z: float, size: tuple[float, float, float]) -> Object3D:
    return Object3D(np.array([x, y, z]), np.array(size), 0.3, "lidar", 20)


def test_rider_and_bike_pair_into_one_cyclist():
    boxes = np.array(
        [
            [100, 40, 140, 160],  # 0 person on ...
            [90, 100, 160, 170],  # 1 ... this bicycle
            [300, 40, 340, 160],  # 2 person, no bike near
            [200, 100, 270, 170],  # 3 parked bicycle
            [215, 40, 255, 150],  # 4 person box over the bicycle, far behind it in 3D
        ],
        float,
    )
    classes = ["person", "bicycle", "person", "bicycle", "person"]
    objects = {
        0: _obj(10.0, 1.0, 0.9, (0.6, 0.6, 1.75)),
        1: _obj(10.2, 1.1, 0.5, (1.8, 0.6, 1.0)),
        2: _obj(10.0, -3.0, 0.9, (0.6, 0.6, 1.75)),
        3: _obj(11.0, -1.0, 0.5, (1.8, 0.6, 1.0)),
        4: _obj(25.0, -2.0, 0.9, (0.6, 0.6, 1.75)),
    }
    pairs = pair_riders(boxes, classes, [0, 1, 2, 3, 4], objects)
    assert pairs == {0: 1}
    cyclist = rider_object(objects[0], objects[1])
    np.testing.assert_allclose(cyclist.center[:2], [10.2, 1.1])
    np.testing.assert_allclose([cyclist.center[2] - cyclist.size[2] / 2], [0.0], atol=1e-9)
    np.testing.assert_allclose(cyclist.size, [1.8, 0.6, 1.775])
    assert cyclist.yaw == 0.3 and cyclist.points == 40
    # A box not kept never pairs; without 3D the boxes decide.
    assert pair_riders(boxes, classes, [0, 2, 3], objects) == {}
    assert pair_riders(boxes, classes, [0, 1, 4, 3], {}) == {0: 1, 4: 3}


@pytest.mark.real_data
def test_view_of_delft_riders_pair_with_their_cyclist_box():
    """On the VoD labels (rider: the person on a ridden bike; Cyclist: rider + bike box;
    bicycle / moped_scooter: parked ones): every rider pairs with its Cyclist box. A
    pedestrian standing at a parked bicycle pairs too ("at a bicycle"); measured 7 of 7
    riders and 1 of 9 pedestrians (0.6 m from a parked bicycle)."""
    root = need_data("view_of_delft", "lidar", "training")
    riders = paired_riders = pedestrians = paired_pedestrians = 0
    for frame in ("00549", "01047"):
        calib = object_calib(root / "calib" / f"{frame}.txt")
        wanted = ("Pedestrian", "rider", "Cyclist", "bicycle", "moped_scooter")
        labels = [
            lab
            for lab in read_labels(root / "label_2" / f"{frame}.txt", calib.T_cam_lidar)
            if lab.cls in wanted
        ]
        classes = ["person" if lab.cls in ("Pedestrian", "rider") else "bicycle" for lab in labels]
        objects = {
            i: Object3D(lab.center_lidar, lab.size_lwh, lab.yaw_lidar, "lidar", 10)
            for i, lab in enumerate(labels)
        }
        boxes = np.array([lab.box2d for lab in labels])
        pairs = pair_riders(boxes, classes, list(range(len(labels))), objects)
        for i, lab in enumerate(labels):
            if lab.cls == "rider":
                riders += 1
                paired_riders += i in pairs and labels[pairs[i]].cls == "Cyclist"
            elif lab.cls == "Pedestrian":
                pedestrians += 1
                paired_pedestrians += i in pairs
    print(f"riders paired {paired_riders}/{riders}, pedestrians {paired_pedestrians}/{pedestrians}")
    assert riders >= 5 and paired_riders == riders
    assert paired_pedestrians <= 0.2 * pedestrians


@pytest.mark.real_data
def test_riders_in_view_of_delft_become_one_cyclist_each_with_both_boxes_kept(tmp_path):
    """The pipeline on the VoD frames (riders among parked bikes): each paired rider is
    one 3D cyclist with the person's box named, and both 2D boxes are still published."""
    import json

    from conftest import DATA, MODELS
    from multimodal_perception.bagbuild import build_real_bag
    from multimodal_perception.replay import replay
    from multimodal_perception.ros_pkg.bag_io import iter_bag
    from multimodal_perception.ros_pkg.outputs import detection2d_array_to_arrays

    need_data("view_of_delft")
    if not (MODELS / "yolox_nano_416").is_dir():
        pytest.skip(f"real models absent ({MODELS})")
    build_real_bag("vod", DATA, tmp_path / "vod")
    replay([tmp_path / "vod"], tmp_path / "out", pictures=0, progress=False,
           overrides={"models.directory": str(MODELS), "detector.tiling": True})  # fmt: skip
    out = tmp_path / "out" / "output.mcap"
    scenes = [json.loads(r.msg.data) for r in iter_bag(out, ["/multimodal_perception/scene"])]
    cyclists = [o for s in scenes for o in s["objects"] if o["class"] == "cyclist"]
    assert cyclists and all("rider_box_2d" in o for o in cyclists)
    labels3d = [
        d.results[0].hypothesis.class_id
        for r in iter_bag(out, ["/multimodal_perception/objects_3d"])
        for d in r.msg.detections
    ]
    assert labels3d.count("cyclist") == len(cyclists)
    kept2d = [
        c
        for r in iter_bag(out, ["/multimodal_perception/detections_2d"])
        for c in detection2d_array_to_arrays(r.msg).class_ids
    ]
    assert kept2d.count("person") >= len(cyclists) and kept2d.count("bicycle") + kept2d.count(
        "motorcycle"
    ) >= len(cyclists)
