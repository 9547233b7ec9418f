"""Compute where it decides something: segmentation windows around the small boxes
(``segmenter.mode: regions``), detector tiles over the horizon band only, and the band
itself from the camera model and the ground plane."""

from __future__ import annotations

import math
from concurrent.futures import Future

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DATA, MODELS, need_data
from multimodal_perception.config import load_parameters
from multimodal_perception.datasets.kitti import object_calib, read_labels, read_velodyne_bin
from multimodal_perception.fusion.ground import GroundModel, fit_ground
from multimodal_perception.fusion.projection import horizon_band
from multimodal_perception.perception.regions import MIN_PAD_PX, PAD, plan_windows
from multimodal_perception.perception.stack import load_models
from multimodal_perception.perception.tiling import band_tiles
from multimodal_perception.ros_pkg.camera_info import CameraModel

KITTI = DATA / "kitti_object/training"


def _padded(box: np.ndarray, width: int, height: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    px, py = max(PAD * (x2 - x1), MIN_PAD_PX), max(PAD * (y2 - y1), MIN_PAD_PX)
    return np.array([max(x1 - px, 0), max(y1 - py, 0), min(x2 + px, width), min(y2 + py, height)])


boxes_strategy = st.lists(
    st.tuples(st.floats(0, 1200), st.floats(0, 360), st.floats(2, 300), st.floats(2, 300)),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(raw=boxes_strategy, side=st.integers(40, 400), max_windows=st.integers(1, 8))
def test_windows_hold_the_small_boxes_smallest_first(
    raw: list[tuple[float, float, float, float]], side: int, max_windows: int
) -> None:
    width, height = 1242, 375
    boxes = np.array([[x, y, min(x + w, width), min(y + h, height)] for x, y, w, h in raw])
    boxes = boxes.reshape(-1, 4)
    windows = plan_windows(boxes, width, height, side, max_windows)
    assert len(windows) <= max_windows
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert (x1 - x0, y1 - y0) == (min(side, width), min(side, height))
    held = []
    for box in boxes:
        r = _padded(box, width, height)
        fits = r[2] - r[0] <= min(side, width) and r[3] - r[1] <= min(side, height)
        inside = any(
            r[0] >= x0 - 1 and r[1] >= y0 - 1 and r[2] <= x1 + 1 and r[3] <= y1 + 1
            for x0, y0, x1, y1 in windows
        )
        if not fits or r[2] <= r[0] or r[3] <= r[1]:
            continue  # the letterbox judges a box too big for a window
        held.append(inside)
    if len(windows) < max_windows:  # room was left: every box that fits has a window
        assert all(held)


def test_windows_merge_neighbours_and_skip_big_boxes() -> None:
    boxes = np.array([[100, 150, 120, 200], [130, 150, 150, 195], [600, 50, 900, 370]], float)
    windows = plan_windows(boxes, 1242, 375, 188, 6)
    assert len(windows) == 1  # the two pedestrians share one; the big car gets none
    x0, _, x1, _ = windows[0]
    assert x0 <= 95 and x1 >= 155


def test_band_tiles_cover_the_band_and_only_it() -> None:
    tiles = band_tiles(1936, 1216, 624, 0.25, band=(560, 760))
    assert {(t.y0, t.y1) for t in tiles} == {(348, 972)}  # one row, centred on the band
    assert min(t.x0 for t in tiles) == 0 and max(t.x1 for t in tiles) == 1936
    assert len(band_tiles(1936, 1216, 624, 0.25)) > len(tiles)  # the whole frame: 3 rows
    tall = band_tiles(1936, 1216, 400, 0.25, band=(300, 900))
    assert min(t.y0 for t in tall) == 300 and max(t.y1 for t in tall) == 900


def _pinhole(width: int = 1280, height: int = 720, f: float = 700.0) -> CameraModel:
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return CameraModel(
        width, height, K, np.zeros(5), np.eye(3), np.hstack([K, np.zeros((3, 1))]), "plumb_bob"
    )


def _camera_at(height_m: float, pitch_down: float = 0.0) -> np.ndarray:
    """T_cam_base for a forward camera ``height_m`` above base_link's ground (z = 0)."""
    R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)  # base -> optical
    c, s = math.cos(pitch_down), math.sin(pitch_down)
    R = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ R
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.array([0.0, 0.0, height_m])
    return T


@pytest.mark.parametrize("pitch_deg", [0.0, 3.0])
def test_horizon_band_spans_feet_at_the_near_range_to_heads_beyond(pitch_deg: float) -> None:
    """Against a dense, independent sampling of the same geometry: feet on the ground and
    heads 2 m up at 15-300 m, everywhere in view, through the pinhole equations."""
    cam, h, near = _pinhole(), 1.6, 15.0
    T = _camera_at(h, math.radians(pitch_deg))
    band = horizon_band(cam, T, GroundModel(np.array([0, 0, 1.0]), 0.0), near)
    assert band is not None
    r, b = np.meshgrid(np.linspace(near, 300, 400), np.linspace(-1.4, 1.4, 400))
    xy = np.column_stack([(r * np.cos(b)).ravel(), (r * np.sin(b)).ravel()])
    rows = []
    for z in (0.0, 2.0):
        p = np.column_stack([xy, np.full(len(xy), z), np.ones(len(xy))]) @ T.T
        u = cam.K[0, 0] * p[:, 0] / p[:, 2] + cam.K[0, 2]
        v = cam.K[1, 1] * p[:, 1] / p[:, 2] + cam.K[1, 2]
        ok = (p[:, 2] > 0.1) & (u >= 0) & (u <= cam.width)
        rows.append(v[ok])
    v = np.concatenate(rows)
    assert abs(band[0] - max(0, v.min())) < 6 and abs(band[1] - min(cam.height, v.max())) < 6
    # tilted down, the horizon (and the band) move up in the image
    horizon = cam.K[1, 2] - cam.K[1, 1] * math.tan(math.radians(pitch_deg))
    assert band[0] < horizon < band[1]
    assert horizon_band(cam, T, None, near) is None


def test_kitti_road_users_beyond_the_near_range_lie_in_the_band() -> None:
    """On the real KITTI frames with the lidar's own ground plane: every labelled road
    user beyond 15 m has its box inside the band (2 px slack), and the band leaves out
    most of the frame's rows (near road, bonnet, sky)."""
    need_data("kitti_object")
    checked = 0
    for frame in ("000000", "000001", "000002"):
        calib = object_calib(KITTI / "calib" / f"{frame}.txt")
        image = cv2.imread(str(KITTI / "image_2" / f"{frame}.png"))
        h, w = image.shape[:2]
        cam = CameraModel(w, h, calib.K, np.zeros(5), np.eye(3),
                          np.hstack([calib.K, np.zeros((3, 1))]), "plumb_bob")  # fmt: skip
        ground = fit_ground(read_velodyne_bin(KITTI / "velodyne" / f"{frame}.bin")[:, :3])
        band = horizon_band(cam, calib.T_cam_lidar, ground, 15.0)
        assert band is not None
        assert band[1] - band[0] < 0.75 * h
        for lab in read_labels(KITTI / "label_2" / f"{frame}.txt", calib.T_cam_lidar):
            if not lab.has_3d or np.hypot(*lab.center_lidar[:2]) < 16 or lab.cls == "DontCare":
                continue
            checked += 1
            assert band[0] - 2 <= lab.box2d[1] and lab.box2d[3] <= band[1] + 2, (frame, lab.cls)
    assert checked >= 4


def _kitti_stack(mode: str):
    params = load_parameters(None).with_overrides(
        {"models.directory": str(MODELS), "segmenter.mode": mode, "performance.threads": 2}
    )
    return load_models(params)


def test_region_windows_segment_small_boxes_as_the_tiles_do() -> None:
    """Real DeepLab on the KITTI frames: inside the small labelled road users' boxes the
    regions mode's labels agree with the full tiles more than the letterbox's do; outside
    every window they are the letterbox's exactly."""
    need_data("kitti_object")
    stacks = {m: _kitti_stack(m) for m in ("tiles", "letterbox", "regions")}
    agree: dict[str, list[float]] = {"letterbox": [], "regions": []}
    for frame in ("000000", "000001", "000002"):
        image = cv2.imread(str(KITTI / "image_2" / f"{frame}.png"))
        calib = object_calib(KITTI / "calib" / f"{frame}.txt")
        labelled = read_labels(KITTI / "label_2" / f"{frame}.txt", calib.T_cam_lidar)
        boxes = np.array([lab.box2d for lab in labelled if lab.cls != "DontCare"], float)
        _check_frame(image, boxes, stacks, agree)
    assert len(agree["regions"]) >= 3
    # measured: letterbox 0.02 (a 20 px pedestrian is 8 px there), regions 0.72 (the
    # windows see less context than a tile: one box 0.34, the rest 0.76-0.94)
    assert np.mean(agree["regions"]) > np.mean(agree["letterbox"]) + 0.4, agree
    assert np.mean(agree["regions"]) > 0.6, agree


def _check_frame(image: np.ndarray, boxes: np.ndarray, stacks: dict, agree: dict) -> None:
    h, w = image.shape[:2]
    small = [b for b in boxes if b[3] - b[1] < 60]
    labels = {m: s.segmenter.segment(image, boxes if m == "regions" else None).labels
              for m, s in stacks.items()}  # fmt: skip
    for x1, y1, x2, y2 in np.round(small).astype(int):
        ref = labels["tiles"][y1:y2, x1:x2]
        for m in agree:
            agree[m].append(float((labels[m][y1:y2, x1:x2] == ref).mean()))
    seg = stacks["regions"].segmenter
    tile = seg._tiles(w, h)[0]
    side = round(129 / (seg.manifest.input.height / (tile.y1 - tile.y0)))
    outside = np.ones((h, w), bool)
    for x0, y0, x1, y1 in plan_windows(boxes, w, h, side, seg.max_regions):
        outside[y0:y1, x0:x1] = False
    assert outside.any()
    assert np.array_equal(labels["regions"][outside], labels["letterbox"][outside])


def test_parallel_regions_equal_sequential_and_a_detector_error_does_not_hang() -> None:
    need_data("kitti_object")
    image = cv2.imread(str(KITTI / "image_2" / "000002.png"))
    stack = _kitti_stack("regions")
    assert stack.parallel
    raw, pending = stack.run_frame(image)
    assert pending is not None
    sequential = stack.segmenter.segment(image, raw.boxes)
    assert np.array_equal(pending.result(timeout=60).labels, sequential.labels)
    detecting, segmenting = stack.start_frame(image)
    assert segmenting is not None
    assert np.array_equal(segmenting.result(timeout=60).labels, sequential.labels)
    assert np.array_equal(detecting.result().boxes, raw.boxes)

    def broken(bgr: np.ndarray, band: object = None) -> object:
        raise RuntimeError("detector failed")

    stack.detector = broken  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="detector failed"):
        stack.run_frame(image)
    # the segmenter's worker was told, not left waiting: it takes the next job
    done: Future = stack._worker().submit(lambda: 1)
    assert done.result(timeout=60) == 1
    stack.close()
