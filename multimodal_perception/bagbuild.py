"""Build rosbag2 (MCAP, zstd) files from the real recordings in ``../shared/data``.

KITTI raw (camera + lidar, 40 frames at 10 Hz), the labelled KITTI object frames and
the View-of-Delft frames (camera + lidar + 3+1D radar) become bags with CameraInfo,
static tf from the calibration and ground truth on its own topics. None of these
sources carries per-sensor stamps, so the builder applies a :class:`TimingModel`
(rate, offset and jitter per sensor, seeded) and records it in the bag's metadata
(``custom_data["mmp.timing_model"]``) so replay tests are honest about what is real.

The bags are derived from data under research/non-commercial terms: they are written to
an ignored cache directory, never committed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .datasets.kitti import (
    CameraLidarCalib,
    Label,
    object_calib,
    raw_calib,
    read_labels,
    read_velodyne_bin,
)
from .datasets.vod import RADAR_COLUMNS, vod_frames
from .ros_pkg.bag_io import BagWriter
from .ros_pkg.camera_info import CameraModel, model_to_camera_info
from .ros_pkg.factory import MessageFactory
from .ros_pkg.image import array_to_image
from .ros_pkg.outputs import detection2d_array, detection3d_array
from .ros_pkg.pointcloud import structured_to_cloud
from .ros_pkg.tf_msgs import transform_from_matrix, transforms_to_tf_message
from .timing import SensorTiming, TimingModel

TOPICS = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "lidar": "/lidar/points",
    "radar": "/radar/points",
    "tf_static": "/tf_static",
    "gt_objects": "/ground_truth/objects_3d",
    "gt_boxes": "/ground_truth/boxes_2d",
}
BASE, LIDAR, CAMERA, RADAR = "base_link", "lidar", "camera_optical", "radar"
DATASETS = ("kitti_raw", "kitti_object", "vod")
# An arbitrary but fixed epoch for sources without stamps (2011-09-26 13:00 UTC, KITTI's day).
EPOCH_NS = 1_317_042_000 * 1_000_000_000


@dataclass
class Frame:
    """One camera frame with its partners, as read from disk."""

    index: int
    image_bgr: np.ndarray
    lidar: np.ndarray  # (N, 4) x y z intensity
    calib: CameraLidarCalib
    labels: list[Label] = field(default_factory=list)
    radar: np.ndarray | None = None  # (M, 7) VoD columns
    T_lidar_radar: np.ndarray | None = None


def _kitti_raw_frames(root: Path, wanted: Collection[int] | None) -> Iterator[Frame]:
    calib = raw_calib(root / "calib_2011_09_26_subset.txt")
    for i, path in enumerate(sorted((root / "image_02").glob("*.png"))):
        if wanted is not None and i not in wanted:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        yield Frame(
            i, image, read_velodyne_bin(root / "velodyne_points" / f"{path.stem}.bin"), calib
        )


def _kitti_object_frames(root: Path, wanted: Collection[int] | None) -> Iterator[Frame]:
    base = root / "training"
    for i, path in enumerate(sorted((base / "image_2").glob("*.png"))):
        if wanted is not None and i not in wanted:
            continue
        calib = object_calib(base / "calib" / f"{path.stem}.txt")
        labels = read_labels(base / "label_2" / f"{path.stem}.txt", calib.T_cam_lidar)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        lidar = read_velodyne_bin(base / "velodyne" / f"{path.stem}.bin")
        yield Frame(i, image, lidar, calib, labels)


def _vod_frames(root: Path, wanted: Collection[int] | None) -> Iterator[Frame]:
    for i, vf in enumerate(vod_frames(root)):
        if wanted is not None and i not in wanted:
            continue
        calib = vf.camera_calib()
        yield Frame(
            i,
            cv2.imread(str(vf.image_path), cv2.IMREAD_COLOR),
            vf.lidar(),
            calib,
            read_labels(vf.label_path, calib.T_cam_lidar),
            vf.radar(),
            vf.T_lidar_radar(),
        )


def timing_model_for(dataset: str) -> TimingModel:
    if dataset == "kitti_raw":
        # KITTI triggers the cameras when the Velodyne faces forward: same nominal time,
        # a few ms of trigger/transport jitter.
        return TimingModel(
            EPOCH_NS,
            {"camera": SensorTiming(10.0, 0.0, 0.002), "lidar": SensorTiming(10.0, -0.005, 0.002)},
            seed=2011,
            note="KITTI raw subset ships no timestamps; stamps are modelled at 10 Hz.",
        )
    if dataset == "kitti_object":
        return TimingModel(
            EPOCH_NS,
            {"camera": SensorTiming(1.0), "lidar": SensorTiming(1.0)},
            note="Independent labelled frames, one per second; sensors share the frame stamp.",
        )
    if dataset == "vod":
        # VoD's own synchronisation pairs each camera frame with the nearest lidar and
        # radar scan; the radar (13 Hz) is modelled 20 ms early, the lidar 5 ms early.
        return TimingModel(
            EPOCH_NS,
            {
                "camera": SensorTiming(1.0),
                "lidar": SensorTiming(1.0, -0.005, 0.0),
                "radar": SensorTiming(1.0, -0.020, 0.0),
            },
            note="Independent VoD frames, one per second; offsets model the dataset's sync.",
        )
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")


def _frames(dataset: str, root: Path, wanted: Collection[int] | None = None) -> Iterator[Frame]:
    readers = {
        "kitti_raw": _kitti_raw_frames,
        "kitti_object": _kitti_object_frames,
        "vod": _vod_frames,
    }
    return readers[dataset](root, wanted)


def dataset_dir(data_root: Path, dataset: str) -> Path:
    names = {
        "kitti_raw": "kitti_raw_2011_09_26",
        "kitti_object": "kitti_object",
        "vod": "view_of_delft",
    }
    return Path(data_root) / names[dataset]


def _static_tf(factory: MessageFactory, frame: Frame, stamp_ns: int) -> Any:
    transforms = [
        transform_from_matrix(BASE, LIDAR, stamp_ns, np.eye(4)),
        transform_from_matrix(LIDAR, CAMERA, stamp_ns, np.linalg.inv(frame.calib.T_cam_lidar)),
    ]
    if frame.T_lidar_radar is not None:
        transforms.append(transform_from_matrix(LIDAR, RADAR, stamp_ns, frame.T_lidar_radar))
    return transforms_to_tf_message(transforms, factory=factory)


def _camera_info(factory: MessageFactory, frame: Frame, stamp_ns: int) -> Any:
    h, w = frame.image_bgr.shape[:2]
    K = frame.calib.K
    P = np.hstack([K, np.zeros((3, 1))])
    model = CameraModel(w, h, K, np.zeros(5), np.eye(3), P, "plumb_bob", CAMERA)
    return model_to_camera_info(model, factory=factory, stamp_ns=stamp_ns)


def _ground_truth(factory: MessageFactory, frame: Frame, stamp_ns: int) -> list[tuple[str, Any]]:
    labels = [lab for lab in frame.labels if lab.cls != "DontCare"]
    if not labels:
        return []
    boxes3d = [lab for lab in labels if lab.has_3d]
    objects = detection3d_array(
        factory,
        stamp_ns=stamp_ns,
        frame_id=LIDAR,
        centers=np.array([lab.center_lidar for lab in boxes3d]).reshape(-1, 3),
        sizes=np.array([lab.size_lwh for lab in boxes3d]).reshape(-1, 3),
        yaws=np.array([lab.yaw_lidar for lab in boxes3d]),
        class_ids=[lab.cls for lab in boxes3d],
        scores=[1.0] * len(boxes3d),
        ids=[f"{frame.index}:{i}" for i in range(len(boxes3d))],
    )
    boxes = detection2d_array(
        factory,
        stamp_ns=stamp_ns,
        frame_id=CAMERA,
        boxes_xyxy=np.array([lab.box2d for lab in labels]).reshape(-1, 4),
        class_ids=[lab.cls for lab in labels],
        scores=[1.0] * len(labels),
        ids=[f"{frame.index}:{i}" for i in range(len(labels))],
    )
    return [(TOPICS["gt_objects"], objects), (TOPICS["gt_boxes"], boxes)]


def build_real_bag(
    dataset: str, data_root: str | Path, out: str | Path, frames: Collection[int] | None = None
) -> dict[str, int]:
    """Write ``out`` (a rosbag2 directory) from one dataset; returns messages per topic.
    ``frames``: only these frame indices (in the dataset's sorted order), e.g. to keep a
    calibration set and a report set apart."""
    root = dataset_dir(Path(data_root), dataset)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is absent (is ../shared/data beside the clone?)")
    timing = timing_model_for(dataset)
    custom = {
        "mmp.source": f"{dataset} from {root.name} (see its PROVENANCE.txt; not redistributable)",
        "mmp.timing_model": timing.to_json(),
    }
    with BagWriter(out, custom_data=custom) as bag:
        factory = bag.factory
        drawn = 0  # frames whose stamps were drawn (kitti_raw's jitter is one seeded sequence)
        for frame in _frames(dataset, root, frames):
            for skipped in range(drawn, frame.index):  # a subset keeps the full bag's stamps
                for sensor in ("camera", "lidar", "radar")[: 3 if dataset == "vod" else 2]:
                    timing.stamp(sensor, skipped)
            drawn = frame.index + 1
            t_cam = timing.stamp("camera", frame.index)
            items: list[tuple[int, str, Any]] = []
            if not bag.counts or dataset != "kitti_raw":  # the first frame written
                # Latched in a live system; repeated per frame where calibration changes.
                items.append((t_cam, TOPICS["tf_static"], _static_tf(factory, frame, t_cam)))
            image = array_to_image(
                frame.image_bgr, "bgr8", factory=factory, stamp_ns=t_cam, frame_id=CAMERA
            )
            items.append((t_cam, TOPICS["image"], image))
            items.append((t_cam, TOPICS["camera_info"], _camera_info(factory, frame, t_cam)))
            t_lidar = timing.stamp("lidar", frame.index)
            cols = {n: frame.lidar[:, i] for i, n in enumerate(("x", "y", "z", "intensity"))}
            cloud = structured_to_cloud(cols, factory=factory, stamp_ns=t_lidar, frame_id=LIDAR)
            items.append((t_lidar, TOPICS["lidar"], cloud))
            if frame.radar is not None:
                t_radar = timing.stamp("radar", frame.index)
                rcols = {n: frame.radar[:, i] for i, n in enumerate(RADAR_COLUMNS)}
                radar = structured_to_cloud(
                    rcols, factory=factory, stamp_ns=t_radar, frame_id=RADAR
                )
                items.append((t_radar, TOPICS["radar"], radar))
            items += [(t_cam, topic, msg) for topic, msg in _ground_truth(factory, frame, t_cam)]
            for stamp, topic, msg in sorted(items, key=lambda item: item[0]):
                bag.write(topic, msg, stamp)
        return dict(bag.counts)
