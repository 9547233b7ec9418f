"""Write a synthetic scenario as a rosbag2 (MCAP, zstd) with ground truth on its own topics.

Sensors run at their configured rates with per-sensor offsets and jitter (a seeded
:class:`~multimodal_perception.timing.TimingModel`); each message is rendered at its own
stamp, which is its true capture time. Everything random draws from generators seeded by
``seed`` in a fixed order, so the same arguments give the same messages, stamps and ground
truth; on one machine the bag is byte-identical, while other CPUs round the ray casting and
the maths differently in the last bit (pixels and points within the tolerances of
``test/test_sim.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..ros_pkg.bag_io import BagWriter
from ..ros_pkg.camera_info import CameraModel, model_to_camera_info
from ..ros_pkg.image import array_to_image, bgr8_to_compressed
from ..ros_pkg.outputs import detection2d_array, detection3d_array, string_msg
from ..ros_pkg.pointcloud import structured_to_cloud
from ..ros_pkg.tf_msgs import transform_from_matrix, transforms_to_tf_message
from ..timing import SensorTiming, TimingModel
from .groundtruth import camera_truth
from .render import lidar_scan, mount_pose, planar_pose, radar_scan, render_camera, snapshot
from .world import World, make_world

TOPICS = {
    "image": "/camera/image_raw",
    "image_compressed": "/camera/image_raw/compressed",
    "camera_info": "/camera/camera_info",
    "lidar": "/lidar/points",
    "radar": "/radar/points",
    "tf": "/tf",
    "tf_static": "/tf_static",
    "gt_objects": "/ground_truth/objects_3d",
    "gt_boxes": "/ground_truth/boxes_2d",
    "gt_scene": "/ground_truth/scene",
    "gt_semantic": "/ground_truth/semantic",
}
FRAMES = {
    "odom": "odom",
    "base": "base_link",
    "camera": "camera_optical",
    "lidar": "lidar",
    "radar": "radar",
}
# 2026-01-01T00:00:00Z: synthetic time starts at a fixed, clearly artificial epoch.
SYNTHETIC_EPOCH_NS = 1_767_225_600 * 1_000_000_000
TF_RATE_HZ = 50.0


@dataclass(frozen=True)
class SyntheticConfig:
    scenario: str = "urban_crossing"
    seconds: float = 10.0
    seed: int = 0
    image_format: str = "jpeg"  # "jpeg" (CompressedImage), "png" or "raw" (Image bgr8)
    jpeg_quality: int = 90
    camera: SensorTiming = field(default_factory=lambda: SensorTiming(10.0, 0.0, 0.001))
    lidar: SensorTiming = field(default_factory=lambda: SensorTiming(10.0, 0.02, 0.001))
    radar: SensorTiming = field(default_factory=lambda: SensorTiming(13.0, 0.007, 0.001))
    min_box_pixels: int = 30  # smaller visible boxes are left out of /ground_truth/boxes_2d


def _static_tf(world: World, factory: Any, stamp: int) -> Any:
    rig = world.rig
    transforms = [
        transform_from_matrix(FRAMES["base"], FRAMES[name], stamp, mount_pose(getattr(rig, name)))
        for name in ("camera", "lidar", "radar")
    ]
    return transforms_to_tf_message(transforms, factory=factory)


def _camera_model(world: World) -> CameraModel:
    rig = world.rig
    P = np.hstack([rig.K, np.zeros((3, 1))])
    return CameraModel(
        rig.width,
        rig.height,
        rig.K,
        np.array(rig.distortion),
        np.eye(3),
        P,
        "plumb_bob",
        FRAMES["camera"],
    )


def sensor_events(
    timing: TimingModel, seconds: float, sensors: Sequence[str] = ("camera", "lidar", "radar")
) -> list[tuple[int, int, str]]:
    """(stamp, order, sensor) for every sample of ``sensors`` (drawn in that order: the
    seeded draws depend on it) and of tf, in stamp order; ties: tf, radar, lidar, then the
    cameras in the given order."""
    order = {"tf": 0, "radar": 1, "lidar": 2}
    for name in sensors:
        order.setdefault(name, len(order))
    events = [
        (stamp, order[name], name) for name in sensors for stamp in timing.stamps(name, seconds)
    ]
    n_tf = int(seconds * TF_RATE_HZ) + 1
    events += [(timing.start_ns + round(k * 1e9 / TF_RATE_HZ), 0, "tf") for k in range(n_tf)]
    return sorted(events)


def write_synthetic_bag(
    out: str | Path, config: SyntheticConfig = SyntheticConfig()
) -> dict[str, int]:
    world = make_world(config.scenario, config.seed)
    timing = TimingModel(
        SYNTHETIC_EPOCH_NS,
        {"camera": config.camera, "lidar": config.lidar, "radar": config.radar},
        seed=config.seed,
        note=f"synthetic {config.scenario}: stamps are the true capture times",
    )
    noise = np.random.default_rng(config.seed + 1)
    custom = {
        "mmp.source": f"synthetic world, scenario {config.scenario}, seed {config.seed}",
        "mmp.timing_model": timing.to_json(),
        "mmp.synthetic_config": json.dumps(
            {
                "scenario": config.scenario,
                "seconds": config.seconds,
                "seed": config.seed,
                "image_format": config.image_format,
            },
            sort_keys=True,
        ),
    }
    with BagWriter(out, custom_data=custom) as bag:
        f = bag.factory
        start = timing.start_ns
        bag.write(TOPICS["tf_static"], _static_tf(world, f, start), start)
        cam_model = _camera_model(world)
        rig = world.rig
        for stamp, _, sensor in sensor_events(timing, config.seconds):
            t = (stamp - start) / 1e9
            ego = world.ego.state(t)
            T_world_base = planar_pose(ego)
            if sensor == "tf":
                odom = transform_from_matrix(FRAMES["odom"], FRAMES["base"], stamp, T_world_base)
                bag.write(TOPICS["tf"], transforms_to_tf_message([odom], factory=f), stamp)
                continue
            snap = snapshot(world, t)
            if sensor == "camera":
                T_world_cam = T_world_base @ mount_pose(rig.camera)
                frame = render_camera(world, snap, T_world_cam, noise)
                _write_camera(bag, config, frame.bgr, stamp)
                bag.write(
                    TOPICS["camera_info"],
                    model_to_camera_info(cam_model, factory=f, stamp_ns=stamp),
                    stamp,
                )
                truth = camera_truth(world, snap, frame, ego, T_world_base, T_world_cam)
                _write_truth(bag, config, world, truth, frame.semantic, stamp, t)
            elif sensor == "lidar":
                scan = lidar_scan(world, snap, T_world_base @ mount_pose(rig.lidar), noise)
                cols = {
                    "x": scan.xyz[:, 0],
                    "y": scan.xyz[:, 1],
                    "z": scan.xyz[:, 2],
                    "intensity": scan.intensity,
                    "ring": scan.ring,
                }
                bag.write(
                    TOPICS["lidar"],
                    structured_to_cloud(
                        cols, factory=f, stamp_ns=stamp, frame_id=FRAMES["lidar"], point_step=20
                    ),
                    stamp,
                )
            else:
                scan = radar_scan(
                    world, snap, ego, T_world_base, T_world_base @ mount_pose(rig.radar), noise
                )
                cols = {
                    "x": scan.xyz[:, 0],
                    "y": scan.xyz[:, 1],
                    "z": scan.xyz[:, 2],
                    "rcs": scan.rcs,
                    "v_r": scan.v_r,
                    "v_r_compensated": scan.v_r_compensated,
                }
                bag.write(
                    TOPICS["radar"],
                    structured_to_cloud(cols, factory=f, stamp_ns=stamp, frame_id=FRAMES["radar"]),
                    stamp,
                )
        return dict(bag.counts)


def _write_camera(bag: BagWriter, config: SyntheticConfig, bgr: np.ndarray, stamp: int) -> None:
    f = bag.factory
    if config.image_format == "raw":
        msg = array_to_image(bgr, "bgr8", factory=f, stamp_ns=stamp, frame_id=FRAMES["camera"])
        bag.write(TOPICS["image"], msg, stamp)
        return
    msg = bgr8_to_compressed(
        bgr,
        config.image_format,
        factory=f,
        stamp_ns=stamp,
        frame_id=FRAMES["camera"],
        jpeg_quality=config.jpeg_quality,
    )
    bag.write(TOPICS["image_compressed"], msg, stamp)


def _write_truth(
    bag: BagWriter,
    config: SyntheticConfig,
    world: World,
    truth: list,
    semantic: np.ndarray,
    stamp: int,
    t: float,
) -> None:
    f = bag.factory
    in_range = [o for o in truth if o.range_m < 120.0]
    bag.write(
        TOPICS["gt_objects"],
        detection3d_array(
            f,
            stamp_ns=stamp,
            frame_id=FRAMES["base"],
            centers=np.array([o.center_base for o in in_range]).reshape(-1, 3),
            sizes=np.array([o.size_lwh for o in in_range]).reshape(-1, 3),
            yaws=np.array([o.yaw_base for o in in_range]),
            class_ids=[o.detection_class for o in in_range],
            scores=[1.0] * len(in_range),
            ids=[str(o.track_id) for o in in_range],
        ),
        stamp,
    )
    boxed = [
        o for o in truth if o.box_visible is not None and o.visible_pixels >= config.min_box_pixels
    ]
    bag.write(
        TOPICS["gt_boxes"],
        detection2d_array(
            f,
            stamp_ns=stamp,
            frame_id=FRAMES["camera"],
            boxes_xyxy=np.array([o.box_visible for o in boxed]).reshape(-1, 4),
            class_ids=[o.detection_class for o in boxed],
            scores=[o.visibility for o in boxed],
            ids=[str(o.track_id) for o in boxed],
        ),
        stamp,
    )
    scene = {
        "stamp_ns": stamp,
        "t": t,
        "scenario": world.name,
        "objects": [o.to_json() for o in truth],
    }
    bag.write(TOPICS["gt_scene"], string_msg(f, json.dumps(scene, sort_keys=True)), stamp)
    bag.write(
        TOPICS["gt_semantic"],
        array_to_image(semantic, "mono8", factory=f, stamp_ns=stamp, frame_id=FRAMES["camera"]),
        stamp,
    )
