"""Real pretrained models from ../shared/models on the real labelled frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from conftest import DATA, MODELS
from multimodal_perception.datasets.kitti import object_calib, raw_calib, read_velodyne_bin
from multimodal_perception.evaluation import DATASET_TO_COCO, ROAD_USER_CLASSES, DetectionScorer
from multimodal_perception.perception.detector import Detector, TilingConfig
from multimodal_perception.perception.models import load_model
from multimodal_perception.perception.segmenter import Segmenter

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def model_dir() -> Path:
    if not (MODELS / "yolox_nano_416").is_dir() or not DATA.is_dir():
        pytest.skip(f"real models/data absent ({MODELS}, {DATA} not beside this clone)")
    return MODELS


def labelled_frames():
    frames = [
        (p, DATA / "kitti_object/training/label_2" / f"{p.stem}.txt")
        for p in sorted((DATA / "kitti_object/training/image_2").glob("*.png"))
    ]
    frames += [
        (p, DATA / "view_of_delft/lidar/training/label_2" / f"{p.stem}.txt")
        for p in sorted((DATA / "view_of_delft/lidar/training/image_2").glob("*.jpg"))
    ]
    return frames


def labels(path: Path):
    gt, classes, ignore = [], [], []
    for line in path.read_text().splitlines():
        f = line.split()
        cls = DATASET_TO_COCO.get(f[0])
        box = [float(x) for x in f[4:8]]
        if cls:
            gt.append(box)
            classes.append(cls)
        else:
            ignore.append(box)
    return np.array(gt).reshape(-1, 4), classes, np.array(ignore).reshape(-1, 4)


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("name", ["yolox_nano_416", "fastestdet_352"])
def test_large_unoccluded_objects_detected_with_tight_boxes(model_dir, name):
    det = Detector(*load_model(name, model_dir))
    pedestrian = [712.4, 143.0, 810.73, 307.92]  # KITTI 000000 label
    cases = [
        (DATA / "kitti_object/training/image_2/000000.png", "person", pedestrian),
        (
            DATA / "view_of_delft/lidar/training/image_2/01047.jpg",
            "car",
            [1434.0, 688.0, 1935.0, 1215.0],
        ),
    ]
    for image, cls, box in cases:
        result = det.detect(cv2.imread(str(image)))
        best = max(
            (iou(b, box) for b, c in zip(result.boxes, result.labels(), strict=True) if c == cls),
            default=0.0,
        )
        print(f"{name} {image.name} {cls}: best IoU {best:.3f}")
        if name == "yolox_nano_416":  # the default detector; FastestDet is printed only
            assert best >= 0.7, f"{name} {image.name}: {cls} IoU {best:.3f}"


def test_recall_and_precision_single_pass_and_tiled(model_dir):
    det = Detector(*load_model("yolox_nano_416", model_dir), tiling=TilingConfig(enabled=True))
    single, tiled = DetectionScorer(ROAD_USER_CLASSES), DetectionScorer(ROAD_USER_CLASSES)
    for image, label in labelled_frames():
        bgr = cv2.imread(str(image))
        gt, classes, ignore = labels(label)
        for scorer, result in ((single, det.detect(bgr)), (tiled, det.detect_tiled(bgr))):
            scorer.add_frame(gt, classes, result.boxes, result.labels(), result.scores, ignore)
    print(single.format("YOLOX-nano single pass (KITTI object + View-of-Delft)"))
    print(tiled.format("YOLOX-nano tiled"))
    assert sum(s.n_gt for s in single.scores.values()) == 42
    assert tiled.total_recall() >= 2 * single.total_recall() > 0


def _ground_pixels(image: Path, calib, velodyne: Path):
    """Lidar ground points in the ego corridor (RANSAC plane), projected into the image."""
    pts = read_velodyne_bin(velodyne)[:, :3].astype(np.float64)
    near = pts[(pts[:, 0] > 4) & (pts[:, 0] < 35) & (np.abs(pts[:, 1]) < 3.0)]
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(near))
    o3d.utility.random.seed(0)
    _, inliers = cloud.segment_plane(0.15, 3, 200)
    uv, depth = calib.project(near[inliers])
    return uv[depth > 0]


ROAD_FRAMES = {
    # KITTI object frames on roads, and frames of the KITTI raw drive.
    "object/000001": "kitti_object/training/{}/000001.{}",
    "object/000002": "kitti_object/training/{}/000002.{}",
    "raw/0000000000": "kitti_raw_2011_09_26/{}/0000000000.{}",
    "raw/0000000020": "kitti_raw_2011_09_26/{}/0000000020.{}",
    "raw/0000000039": "kitti_raw_2011_09_26/{}/0000000039.{}",
    # A pedestrian plaza: its ground is paving (sidewalk), not road.
    "object/000000": "kitti_object/training/{}/000000.{}",
}


@pytest.mark.parametrize("frame", sorted(ROAD_FRAMES))
def test_segmenter_labels_the_lidar_ground_as_road(model_dir, frame):
    seg = Segmenter(*load_model("deeplab_mnedgetpu_cityscapes", model_dir))
    pattern = ROAD_FRAMES[frame]
    if frame.startswith("object"):
        image = DATA / pattern.format("image_2", "png")
        calib = object_calib(DATA / pattern.format("calib", "txt"))
        velodyne = DATA / pattern.format("velodyne", "bin")
    else:
        image = DATA / pattern.format("image_02", "png")
        calib = raw_calib(DATA / "kitti_raw_2011_09_26/calib_2011_09_26_subset.txt")
        velodyne = DATA / pattern.format("velodyne_points", "bin")
    bgr = cv2.imread(str(image))
    result = seg.segment(bgr)
    assert result.labels.shape == bgr.shape[:2] and result.tiles > 1  # no squashing
    uv = _ground_pixels(image, calib, velodyne)
    u, v = uv[:, 0].astype(int), uv[:, 1].astype(int)
    inside = (u >= 0) & (u < bgr.shape[1]) & (v >= 0) & (v < bgr.shape[0])
    labels = result.labels[v[inside], u[inside]]
    road, flat = (labels == 0).mean(), np.isin(labels, (0, 1, 9)).mean()
    print(
        f"KITTI {frame}: of {inside.sum()} lidar ground pixels {road:.3f} road, "
        f"{flat:.3f} road/sidewalk/terrain"
    )
    assert inside.sum() > 500
    assert (flat if frame == "object/000000" else road) > 0.5


def test_twinlitenet_drivable_area_is_below_the_horizon(model_dir):
    lanes = Segmenter(*load_model("twinlitenet_bdd100k", model_dir))
    bgr = cv2.imread(str(DATA / "kitti_object/training/image_2/000001.png"))
    masks = lanes.lanes(bgr)
    h = bgr.shape[0]
    assert masks.drivable.shape == bgr.shape[:2]
    assert (
        masks.drivable[int(0.6 * h) :].mean() > 0.2 and masks.drivable[: int(0.4 * h)].mean() < 0.02
    )


def test_drivable_area_summary_in_the_scene(model_dir):
    import json
    import shutil

    from conftest import CACHE
    from multimodal_perception.bagbuild import build_real_bag
    from multimodal_perception.describe import SCENE_SCHEMA
    from multimodal_perception.replay import replay
    from multimodal_perception.ros_pkg.bag_io import iter_bag

    root = CACHE / "test_lanes"
    shutil.rmtree(root, ignore_errors=True)
    build_real_bag("kitti_object", DATA, root / "bag")
    result = replay(
        [root / "bag"],
        root / "out",
        pictures=0,
        progress=False,
        overrides={"models.directory": str(model_dir), "models.lanes": "twinlitenet_bdd100k"},
    )
    import jsonschema

    scenes = [
        json.loads(r.msg.data)
        for r in iter_bag(result.out_dir / "output.mcap", ["/multimodal_perception/scene"])
    ]
    assert len(scenes) == 3
    for scene in scenes:
        jsonschema.validate(scene, SCENE_SCHEMA)
        area = scene["drivable_area"]
        assert area["model"] == "twinlitenet_bdd100k"
        assert 0.0 <= area["drivable_fraction_lower_half"] <= 1.0
    # Frame 000001 looks down an open road: its ego path is drivable.
    assert scenes[1]["drivable_area"]["ego_path_drivable"] > 0.5
    print("drivable area:", [s["drivable_area"] for s in scenes])
