"""A surround-camera rig in the synthetic world, written as a rosbag2 with per-camera truth.

Owns the four-camera rig (``front``, ``left``, ``rear``, ``right``: yaw 0, +90, 180, -90
degrees about base_link's z, REP 103) and :func:`write_surround_bag`, the multi-camera
counterpart of :func:`~multimodal_perception.sim.bag.write_synthetic_bag`. The world,
renderer and ground truth are those of the single-camera bag: each camera renders
through a copy of the world whose rig carries that camera (``render_camera`` and
``camera_truth`` read the camera from ``world.rig``).

Cameras are triggered in turn, as real rigs are: 10 Hz each, offsets 0, 25, 50 and 75 ms,
plus the timing model's jitter. Every camera frame has its own ground truth at its own
stamp under ``/ground_truth/<name>/`` (2D boxes, 3D boxes in base_link, the scene JSON).
Deterministic for a seed, like the single-camera bag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..ros_pkg.bag_io import BagWriter
from ..ros_pkg.camera_info import model_to_camera_info
from ..ros_pkg.image import bgr8_to_compressed
from ..ros_pkg.outputs import detection2d_array, detection3d_array, string_msg
from ..ros_pkg.pointcloud import structured_to_cloud
from ..ros_pkg.tf_msgs import transform_from_matrix, transforms_to_tf_message
from ..timing import SensorTiming, TimingModel
from .bag import FRAMES, SYNTHETIC_EPOCH_NS, TOPICS, _camera_model, sensor_events
from .groundtruth import ObjectTruth, camera_truth
from .render import lidar_scan, mount_pose, planar_pose, radar_scan, render_camera, snapshot
from .world import Mount, Rig, World, make_world

# Camera name -> yaw of its optical axis about base_link z (degrees, counter-clockwise).
CAMERA_YAWS_DEG = {"front": 0.0, "left": 90.0, "rear": 180.0, "right": -90.0}
CAMERA_NAMES = tuple(CAMERA_YAWS_DEG)


def camera_topics(name: str) -> dict[str, str]:
    """The topics of one rig camera: the contract the multi-camera pipeline reads."""
    return {
        "image_compressed": f"/cameras/{name}/image_raw/compressed",
        "camera_info": f"/cameras/{name}/camera_info",
        "gt_boxes": f"/ground_truth/{name}/boxes_2d",
        "gt_objects": f"/ground_truth/{name}/objects_3d",
        "gt_scene": f"/ground_truth/{name}/scene",
    }


def camera_frame(name: str) -> str:
    return f"camera_{name}_optical"


@dataclass(frozen=True)
class SurroundConfig:
    scenario: str = "urban_crossing"
    seconds: float = 10.0
    seed: int = 0
    start_s: float = 0.0  # scenario time of the bag's first stamp (skip to a moment of interest)
    jpeg_quality: int = 90
    hfov_deg: float = 110.0  # true horizontal field of view of each camera, distortion included
    camera_rate_hz: float = 10.0
    camera_stagger_s: float = 0.025  # trigger offset between consecutive cameras
    camera_jitter_s: float = 0.001
    lidar: SensorTiming = field(default_factory=lambda: SensorTiming(10.0, 0.02, 0.001))
    radar: SensorTiming = field(default_factory=lambda: SensorTiming(13.0, 0.007, 0.001))
    min_box_pixels: int = 30  # smaller visible boxes are left out of the 2D ground truth
    gt_range_m: float = 120.0  # actors within this BEV range are in the 3D ground truth


def nominal_hfov_deg(rig: Rig, true_hfov_deg: float) -> float:
    """The ``Rig.hfov_deg`` (a pinhole focal length) whose distorted image spans
    ``true_hfov_deg``: barrel distortion widens the view, so without this a 110 degree
    pinhole camera would see ~116 degrees and neighbours would overlap more than stated."""
    edge = np.tan(np.radians(true_hfov_deg) / 2)
    points = np.array([[[edge, 0.0, 1.0]], [[-edge, 0.0, 1.0]]])
    zero = np.zeros(3)
    uv, _ = cv2.projectPoints(points, zero, zero, np.eye(3), np.array(rig.distortion))
    half_width = float(np.mean(np.abs(uv.reshape(-1, 2)[:, 0])))  # normalised, both edges
    return float(np.degrees(2 * np.arctan(half_width)))


def surround_mounts(rig: Rig) -> dict[str, Mount]:
    """Camera mounts on a ring around the lidar mast (a roof module), at the single
    camera's height and pitch; the ring's radius puts the front camera where the single
    camera is. Each camera is the single camera turned by its yaw about base_link z."""
    lx, ly, _ = rig.lidar.xyz
    cx, _, cz = rig.camera.xyz
    radius = max(cx - lx, 0.1)
    mounts = {}
    for name, yaw_deg in CAMERA_YAWS_DEG.items():
        a = np.radians(yaw_deg)
        Rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0, 0, 1.0]])
        xyz = (lx + radius * np.cos(a), ly + radius * np.sin(a), cz)
        mounts[name] = Mount(tuple(round(float(v), 6) for v in xyz), Rz @ rig.camera.R)
    return mounts


def camera_worlds(world: World, hfov_deg: float) -> dict[str, World]:
    """One shallow copy of the world per camera, its rig carrying that camera."""
    nominal = nominal_hfov_deg(world.rig, hfov_deg)
    return {
        name: replace(world, rig=replace(world.rig, camera=mount, hfov_deg=nominal))
        for name, mount in surround_mounts(world.rig).items()
    }


def surround_timing(config: SurroundConfig) -> TimingModel:
    sensors = {
        f"camera_{name}": SensorTiming(
            config.camera_rate_hz, k * config.camera_stagger_s, config.camera_jitter_s
        )
        for k, name in enumerate(CAMERA_NAMES)
    }
    sensors.update(lidar=config.lidar, radar=config.radar)
    return TimingModel(
        SYNTHETIC_EPOCH_NS,
        sensors,
        seed=config.seed,
        note=f"synthetic surround {config.scenario}: stamps are the true capture times",
    )


def write_surround_bag(
    out: str | Path, config: SurroundConfig = SurroundConfig()
) -> dict[str, int]:
    """Write the scenario seen by the four-camera rig; returns messages per topic."""
    world = make_world(config.scenario, config.seed)
    cams = camera_worlds(world, config.hfov_deg)
    timing = surround_timing(config)
    noise = np.random.default_rng(config.seed + 1)
    custom = {
        "mmp.source": f"synthetic world, scenario {config.scenario}, seed {config.seed}, "
        f"surround rig {','.join(CAMERA_NAMES)}",
        "mmp.timing_model": timing.to_json(),
        "mmp.synthetic_config": json.dumps(
            {
                "scenario": config.scenario,
                "seconds": config.seconds,
                "seed": config.seed,
                "start_s": config.start_s,
                "image_format": "jpeg",
                "surround": True,
                "cameras": list(CAMERA_NAMES),
                "hfov_deg": config.hfov_deg,
            },
            sort_keys=True,
        ),
    }
    rig = world.rig
    with BagWriter(out, custom_data=custom) as bag:
        f = bag.factory
        start = timing.start_ns
        static = [
            transform_from_matrix(FRAMES["base"], camera_frame(n), start, mount_pose(w.rig.camera))
            for n, w in cams.items()
        ]
        static += [
            transform_from_matrix(FRAMES["base"], FRAMES[s], start, mount_pose(getattr(rig, s)))
            for s in ("lidar", "radar")
        ]
        bag.write(TOPICS["tf_static"], transforms_to_tf_message(static, factory=f), start)
        models = {n: _camera_model(w) for n, w in cams.items()}
        for stamp, _, sensor in sensor_events(timing, config.seconds, tuple(timing.sensors)):
            t = config.start_s + (stamp - start) / 1e9
            ego = world.ego.state(t)
            T_world_base = planar_pose(ego)
            if sensor == "tf":
                odom = transform_from_matrix(FRAMES["odom"], FRAMES["base"], stamp, T_world_base)
                bag.write(TOPICS["tf"], transforms_to_tf_message([odom], factory=f), stamp)
                continue
            snap = snapshot(world, t)
            if sensor.startswith("camera_"):
                name = sensor.removeprefix("camera_")
                cam_world, topics = cams[name], camera_topics(name)
                T_world_cam = T_world_base @ mount_pose(cam_world.rig.camera)
                frame = render_camera(cam_world, snap, T_world_cam, noise)
                image = bgr8_to_compressed(
                    frame.bgr,
                    "jpeg",
                    factory=f,
                    stamp_ns=stamp,
                    frame_id=camera_frame(name),
                    jpeg_quality=config.jpeg_quality,
                )
                bag.write(topics["image_compressed"], image, stamp)
                info = model_to_camera_info(
                    models[name], factory=f, stamp_ns=stamp, frame_id=camera_frame(name)
                )
                bag.write(topics["camera_info"], info, stamp)
                truth = camera_truth(cam_world, snap, frame, ego, T_world_base, T_world_cam)
                _write_truth(bag, config, world.name, name, truth, stamp, t)
            elif sensor == "lidar":
                scan = lidar_scan(world, snap, T_world_base @ mount_pose(rig.lidar), noise)
                cols = {
                    "x": scan.xyz[:, 0],
                    "y": scan.xyz[:, 1],
                    "z": scan.xyz[:, 2],
                    "intensity": scan.intensity,
                    "ring": scan.ring,
                }
                cloud = structured_to_cloud(
                    cols, factory=f, stamp_ns=stamp, frame_id=FRAMES["lidar"], point_step=20
                )
                bag.write(TOPICS["lidar"], cloud, stamp)
            else:
                T_world_radar = T_world_base @ mount_pose(rig.radar)
                scan = radar_scan(world, snap, ego, T_world_base, T_world_radar, noise)
                cols = {
                    "x": scan.xyz[:, 0],
                    "y": scan.xyz[:, 1],
                    "z": scan.xyz[:, 2],
                    "rcs": scan.rcs,
                    "v_r": scan.v_r,
                    "v_r_compensated": scan.v_r_compensated,
                }
                cloud = structured_to_cloud(
                    cols, factory=f, stamp_ns=stamp, frame_id=FRAMES["radar"]
                )
                bag.write(TOPICS["radar"], cloud, stamp)
        return dict(bag.counts)


def _write_truth(
    bag: BagWriter,
    config: SurroundConfig,
    scenario: str,
    camera: str,
    truth: list[ObjectTruth],
    stamp: int,
    t: float,
) -> None:
    """One camera frame's ground truth, by sim/bag.py's rules, on that camera's topics."""
    f, topics = bag.factory, camera_topics(camera)
    in_range = [o for o in truth if o.range_m < config.gt_range_m]
    objects = detection3d_array(
        f,
        stamp_ns=stamp,
        frame_id=FRAMES["base"],
        centers=np.array([o.center_base for o in in_range]).reshape(-1, 3),
        sizes=np.array([o.size_lwh for o in in_range]).reshape(-1, 3),
        yaws=np.array([o.yaw_base for o in in_range]),
        class_ids=[o.detection_class for o in in_range],
        scores=[1.0] * len(in_range),
        ids=[str(o.track_id) for o in in_range],
    )
    bag.write(topics["gt_objects"], objects, stamp)
    boxed = [
        o for o in truth if o.box_visible is not None and o.visible_pixels >= config.min_box_pixels
    ]
    boxes = detection2d_array(
        f,
        stamp_ns=stamp,
        frame_id=camera_frame(camera),
        boxes_xyxy=np.array([o.box_visible for o in boxed]).reshape(-1, 4),
        class_ids=[o.detection_class for o in boxed],
        scores=[o.visibility for o in boxed],
        ids=[str(o.track_id) for o in boxed],
    )
    bag.write(topics["gt_boxes"], boxes, stamp)
    scene = {
        "stamp_ns": stamp,
        "t": t,
        "scenario": scenario,
        "camera": camera,
        "camera_frame_id": camera_frame(camera),
        "objects": [o.to_json() for o in truth],
    }
    bag.write(topics["gt_scene"], string_msg(f, json.dumps(scene, sort_keys=True)), stamp)
