"""Transforms, projection and ego-motion compensation, on real calibration where it exists."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import open3d as o3d
import pytest
from scipy.spatial.transform import Rotation, Slerp

from conftest import CACHE, DATA, need_data
from multimodal_perception.bagbuild import TOPICS, build_real_bag
from multimodal_perception.datasets.kitti import box_corners, points_in_box
from multimodal_perception.fusion.ego_motion import compensate
from multimodal_perception.fusion.projection import project_points
from multimodal_perception.fusion.transforms import (
    DisconnectedError,
    ExtrapolationError,
    TransformBuffer,
    UnknownFrameError,
    load_calibration_yaml,
    load_kitti_calibration,
)
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.camera_info import CameraModel, camera_info_to_model
from multimodal_perception.ros_pkg.pointcloud import cloud_to_xyz
from multimodal_perception.ros_pkg.tf_msgs import StampedTransform, tf_message_to_transforms

S = 1_000_000_000


def st(parent, child, stamp, xyz, rpy=(0, 0, 0)):
    return StampedTransform(
        parent, child, stamp, np.asarray(xyz, float), Rotation.from_euler("xyz", rpy).as_quat()
    )


def test_chain_lookup_interpolates_and_composes():
    tf = TransformBuffer()
    tf.set_transform(st("base_link", "lidar", 0, [1.2, 0, 1.9], [0, 0, 0.1]), static=True)
    tf.set_transform(st("odom", "base_link", 0 * S, [0, 0, 0], [0, 0, 0.0]))
    tf.set_transform(st("odom", "base_link", 1 * S, [10, 2, 0], [0, 0, 0.8]))
    T = tf.lookup("odom", "lidar", S // 4)
    # Expected: lerp translation, slerp rotation, then the static mount.
    rot = Slerp([0, 1], Rotation.from_euler("z", [[0.0], [0.8]]))([0.25])
    T_ob = np.eye(4)
    T_ob[:3, :3], T_ob[:3, 3] = rot.as_matrix()[0], [2.5, 0.5, 0]
    T_bl = np.eye(4)
    T_bl[:3, :3] = Rotation.from_euler("z", 0.1).as_matrix()
    T_bl[:3, 3] = [1.2, 0, 1.9]
    np.testing.assert_allclose(T, T_ob @ T_bl, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("lidar", "odom", S // 4), np.linalg.inv(T), atol=1e-12)
    # A purely static chain is served from the cache.
    tf.set_transform(
        st("base_link", "camera_optical", 0, [1.6, 0, 1.5], [-1.57, 0, -1.57]), static=True
    )
    first = tf.lookup("camera_optical", "lidar")
    assert tf.lookup("camera_optical", "lidar") is first


def test_lookup_errors_name_frames_and_times():
    tf = TransformBuffer(tolerance_ns=50_000_000)
    tf.set_transform(st("odom", "base_link", 1 * S, [0, 0, 0]))
    tf.set_transform(st("odom", "base_link", 2 * S, [1, 0, 0]))
    with pytest.raises(UnknownFrameError, match="'radar' is unknown"):
        tf.lookup("base_link", "radar", S)
    with pytest.raises(ExtrapolationError, match="odom -> base_link"):
        tf.lookup("odom", "base_link", 3 * S)
    # Within tolerance the nearest sample is used.
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 2 * S + 40_000_000)[0, 3], 1.0)
    tf.set_transform(st("map", "other", 0, [0, 0, 0]), static=True)
    with pytest.raises(DisconnectedError):
        tf.lookup("odom", "other", S)
    with pytest.raises(ValueError, match="loop"):
        tf.set_transform(st("base_link", "odom", S, [0, 0, 0]))


def test_history_is_bounded():
    tf = TransformBuffer(cache_ns=2 * S)
    for k in range(100):
        tf.set_transform(st("odom", "base_link", k * S // 10, [k, 0, 0]))
    with pytest.raises(ExtrapolationError):
        tf.lookup("odom", "base_link", 5 * S)
    assert tf.lookup("odom", "base_link", 9 * S)[0, 3] == pytest.approx(90)


def test_calibration_yaml(tmp_path):
    good = tmp_path / "calib.yaml"
    good.write_text(
        "transforms:\n  - {parent: base_link, child: lidar, translation: [1, 0, 2],"
        " rpy: [0, 0, 1.5707963]}\n"
    )
    (t,) = load_calibration_yaml(good)
    np.testing.assert_allclose(t.matrix()[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-6)
    bad = tmp_path / "bad.yaml"
    bad.write_text("transforms:\n  - {parent: base_link, child: lidar, translation: [1, 0]}\n")
    with pytest.raises(ValueError, match=r"transforms\[0\]"):
        load_calibration_yaml(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text("transforms: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception, match=r"could not determine a constructor|python/object"):
        load_calibration_yaml(evil)


def camera(model="plumb_bob", D=(-0.108, 0.139, -0.0038, -0.0048), w=1920, h=1200):
    K = np.array([[2109.75, 0, 949.828], [0, 2071.72, 576.237], [0, 0, 1]])
    return CameraModel(
        w, h, K, np.array(D, float), np.eye(3), np.hstack([K, np.zeros((3, 1))]), model
    )


@pytest.mark.real_data
def test_pjlab_distorted_projection_matches_opencv():
    root = need_data("pjlab_calibration_samples", "lidar2camera", "manual_calib", "data")
    import json

    intr = json.loads((root / "center_camera-intrinsic.json").read_text())
    param = intr["center_camera-intrinsic"]["param"]
    K = np.array(param["cam_K"]["data"], float)
    D = np.array(param["cam_dist"]["data"], float).reshape(-1)
    extr = json.loads((root / "top_center_lidar-to-center_camera-extrinsic.json").read_text())
    T = np.array(
        extr["top_center_lidar-to-center_camera-extrinsic"]["param"]["sensor_calib"]["data"], float
    )
    cloud = np.asarray(o3d.io.read_point_cloud(str(root / "0.pcd")).points)
    assert len(cloud) == 78238
    cam = CameraModel(1920, 1200, K, D, np.eye(3), np.hstack([K, np.zeros((3, 1))]), "plumb_bob")
    proj = project_points(cloud, T, cam)
    ref, _ = cv2.projectPoints(
        cloud[proj.index].reshape(-1, 1, 3), cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], K, D
    )
    err = np.abs(proj.uv - ref.reshape(-1, 2)).max()
    print(
        f"pjlab: {len(proj.index)} of {len(cloud)} points in the image; max |uv - cv2| = "
        f"{err:.2e} px"
    )
    assert len(proj.index) > 5_000 and err < 0.01


@pytest.mark.parametrize(
    ("model", "D"),
    [
        ("rational_polynomial", (0.2, -0.1, 0.001, -0.002, 0.01, 0.25, -0.05, 0.02)),
        ("equidistant", (0.05, -0.01, 0.002, -0.0005)),
    ],
)
def test_other_distortion_models_match_opencv(model, D):
    rng = np.random.default_rng(0)
    pts = rng.uniform([-20, -10, 1], [20, 10, 60], (5000, 3))
    cam = camera(model, D, 1280, 720)
    cam = CameraModel(
        1280, 720, np.array([[600.0, 0, 640], [0, 600, 360], [0, 0, 1]]), cam.D, cam.R, cam.P, model
    )
    proj = project_points(pts, np.eye(4), cam)
    sub = pts[proj.index].reshape(-1, 1, 3)
    if model == "equidistant":
        ref, _ = cv2.fisheye.projectPoints(sub, np.zeros(3), np.zeros(3), cam.K, cam.D)
    else:
        ref, _ = cv2.projectPoints(sub, np.zeros(3), np.zeros(3), cam.K, cam.D)
    assert len(proj.index) > 1000
    assert np.abs(proj.uv - ref.reshape(-1, 2)).max() < 0.01


def test_behind_and_off_axis_points_never_fold_into_the_image():
    # Strong barrel distortion maps far off-axis rays back into the image if unguarded.
    cam = camera("plumb_bob", (-0.45, 0.2, 0, 0, 0), 1280, 720)
    cam = CameraModel(
        1280,
        720,
        np.array([[500.0, 0, 640], [0, 500, 360], [0, 0, 1]]),
        cam.D,
        cam.R,
        cam.P,
        "plumb_bob",
    )
    angles = np.radians(np.arange(-89, 90, 1.0))
    pts = np.stack([np.sin(angles) * 10, np.zeros_like(angles), np.cos(angles) * 10], axis=1)
    pts = np.vstack([pts, [[0, 0, -5.0]]])
    proj = project_points(pts, np.eye(4), cam)
    seen = np.degrees(angles[proj.index])
    # Horizontal half field of view from the undistorted image border.
    edge = cv2.undistortPoints(np.array([[[0.0, 360.0]]]), cam.K, cam.D).ravel()[0]
    half_fov = np.degrees(np.arctan(abs(edge)))
    assert np.abs(seen).max() <= half_fov + 0.5
    assert len(pts) - 1 not in proj.index
    u = proj.uv[:, 0]
    assert np.all(np.diff(u) > 0), "projection must stay monotonic across the field of view"


def test_rectified_projection_uses_P_with_baseline():
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    P = np.hstack([K, [[44.857], [0.2164], [0.0027]]])
    cam = CameraModel(1242, 375, K, np.zeros(5), np.eye(3), P, "plumb_bob")
    assert cam.is_rectified  # no distortion: image_geometry's rectified image
    pts = np.array([[0.0, 0.0, 10.0], [2.0, 1.0, 20.0]])
    for rectified in (True, None):
        proj = project_points(pts, np.eye(4), cam, rectified=rectified)
        uvw = (P @ np.hstack([pts, np.ones((2, 1))]).T).T
        np.testing.assert_allclose(proj.uv, uvw[:, :2] / uvw[:, 2:3])
    # Forced raw: K only, the baseline's 44.857 / z px are missing.
    raw = project_points(pts, np.eye(4), cam, rectified=False)
    np.testing.assert_allclose(proj.uv[:, 0] - raw.uv[:, 0], 44.857 / pts[:, 2], atol=0.2)
    D = np.array([-0.1, 0.01, 0, 0, 0])
    assert not CameraModel(1242, 375, K, D, np.eye(3), P, "plumb_bob").is_rectified
    assert CameraModel(1242, 375, K, D, np.eye(3), P, "plumb_bob", rectified=True).is_rectified


@pytest.mark.real_data
def test_kitti_p2_with_baseline_projects_lidar_like_the_reference():
    """A real KITTI P2 (baseline term ~45 px m) and R0_rect as a CameraInfo with no
    distortion: lidar points land where P2 R0 Tr [x y z 1] puts them, sub-pixel, and the
    frustum crop keeps every one of them."""
    from multimodal_perception.datasets.kitti import _parse_matrix_file, read_velodyne_bin
    from multimodal_perception.fusion.projection import frustum_candidates

    root = need_data("kitti_object", "training")
    m = _parse_matrix_file(root / "calib" / "000000.txt")
    P2 = m["P2"].reshape(3, 4)
    R0 = m["R0_rect"].reshape(3, 3)
    T = np.vstack([m["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]])
    assert abs(P2[0, 3]) > 40  # the baseline term this test is about
    cam = CameraModel(1242, 375, P2[:, :3], np.zeros(5), R0, P2, "plumb_bob")
    cloud = read_velodyne_bin(root / "velodyne" / "000000.bin")[:, :3]
    proj = project_points(cloud.astype(np.float64), T, cam)
    uvw = (P2 @ np.vstack([R0 @ T[:3], [0, 0, 0, 1]]) @ np.c_[cloud, np.ones(len(cloud))].T).T
    ref = uvw[:, :2] / uvw[:, 2:3]
    inside = (uvw[:, 2] > 0) & (ref[:, 0] >= 0) & (ref[:, 0] < 1242) & (ref[:, 1] >= 0)
    inside &= (ref[:, 1] < 375) & ((cloud @ T[2, :3] + T[2, 3]) > 0.1)
    assert set(proj.index.tolist()) == set(np.flatnonzero(inside).tolist())
    err = np.abs(proj.uv - ref[proj.index]).max()
    k_only = project_points(cloud.astype(np.float64), T, cam, rectified=False)
    _, a, b = np.intersect1d(proj.index, k_only.index, return_indices=True)
    shift = np.median(np.abs(proj.uv[a, 0] - k_only.uv[b, 0]) * proj.depth[a])
    print(
        f"kitti P2: {len(proj.index)} points, max |uv - P2 ref| {err:.1e} px; "
        f"K-only is off by {shift:.1f}/depth px"
    )
    assert len(proj.index) > 10_000 and err < 1e-6
    assert shift > 30  # what ignoring P (baseline, and R0) costs: ~37/depth px
    assert np.isin(proj.index, frustum_candidates(cloud, T, cam)).all()


@pytest.fixture(scope="module")
def labelled_bags():
    need_data()
    root = CACHE / "test_alignment_bags"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name in ("kitti_object", "vod"):
        build_real_bag(name, DATA, root / name)
    return root


def _frames(bag):
    """Per camera stamp: camera model, tf buffer, lidar xyz, 3D and 2D ground truth."""
    records = list(iter_bag(bag))
    tf = TransformBuffer()
    by_stamp: dict[int, dict] = {}
    for r in records:
        if r.topic == TOPICS["tf_static"]:
            for t in tf_message_to_transforms(r.msg):
                tf.set_transform(t, static=True)
            continue
        key = round(r.log_time_ns / 1e8)  # one frame per second in these bags
        by_stamp.setdefault(key, {})[r.topic] = r.msg
    for parts in by_stamp.values():
        yield (
            camera_info_to_model(parts[TOPICS["camera_info"]]),
            tf,
            cloud_to_xyz(parts[TOPICS["lidar"]])[0],
            parts[TOPICS["gt_objects"]],
            parts[TOPICS["gt_boxes"]],
        )


def _iou(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", ["kitti_object", "vod"])
def test_real_calibration_lidar_lands_in_labelled_boxes(labelled_bags, dataset):
    fractions, ious = [], []
    for cam, tf, xyz, objects, boxes in _frames(labelled_bags / dataset):
        T_cam_lidar = tf.lookup(cam.frame_id, "lidar")
        box2d = {}
        for det in boxes.detections:
            b = det.bbox
            cx, cy, w, h = b.center.position.x, b.center.position.y, b.size_x, b.size_y
            box2d[det.id] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        for det in objects.detections:
            c = det.bbox.center
            center = np.array([c.position.x, c.position.y, c.position.z])
            yaw = Rotation.from_quat(
                [c.orientation.x, c.orientation.y, c.orientation.z, c.orientation.w]
            ).as_euler("xyz")[2]
            size = np.array([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z])
            inside = points_in_box(xyz, center, size, yaw)
            proj = project_points(xyz[inside], T_cam_lidar, cam)
            x1, y1, x2, y2 = box2d[det.id]
            if len(proj.index) >= 10:
                u, v = proj.uv[:, 0], proj.uv[:, 1]
                ok = (u >= x1 - 5) & (u <= x2 + 5) & (v >= y1 - 5) & (v <= y2 + 5)
                fractions.append((det.results[0].hypothesis.class_id, ok.mean(), len(ok)))
            corners = project_points(
                box_corners(center, size, yaw), T_cam_lidar, cam, margin_px=1e6
            )
            if len(corners.index) == 8:
                hull = (*corners.uv.min(axis=0), *corners.uv.max(axis=0))
                clipped = (
                    max(hull[0], 0),
                    max(hull[1], 0),
                    min(hull[2], cam.width),
                    min(hull[3], cam.height),
                )
                ious.append(_iou(clipped, (x1, y1, x2, y2)))
    print(
        f"{dataset}: per-object fraction of in-image box points inside the 2D box: "
        + ", ".join(f"{c} {f:.2f} ({n})" for c, f, n in fractions)
        + f"; projected-box IoU median {np.median(ious):.3f} over {len(ious)}"
    )
    assert len(fractions) >= 3
    assert min(f for _, f, _ in fractions) >= 0.95
    assert np.median(ious) >= 0.7


def test_kitti_calibration_file_loader(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(
        "P2: 700 0 600 45 0 700 180 0 0 0 1 0\n"
        "R0_rect: 1 0 0 0 1 0 0 0 1\n"
        "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27\n"
    )
    (t,) = load_kitti_calibration(path)
    assert (t.parent, t.child) == ("lidar", "camera_optical")
    T_cam_lidar = np.linalg.inv(t.matrix())
    # A point 10 m ahead of the lidar is 10 m along the camera's optical axis.
    p = T_cam_lidar @ [10, 0, 0, 1]
    assert p[2] == pytest.approx(10 - 0.27 + 45 / 700 * 0, abs=1e-9)


def test_ego_motion_compensation_moves_static_points():
    tf = TransformBuffer()
    tf.set_transform(st("base_link", "lidar", 0, [1.0, 0, 2.0]), static=True)
    for k in range(11):  # 10 m/s straight ahead, turning at 0.2 rad/s
        tf.set_transform(st("odom", "base_link", k * S // 10, [k * 1.0, 0, 0], [0, 0, 0.02 * k]))
    world_point = np.array([[30.0, 5.0, 0.5]])

    def seen_at(t):
        return (np.linalg.inv(tf.lookup("odom", "lidar", t)) @ np.append(world_point, 1))[:3]

    t_lidar, t_cam = 200_000_000, 270_000_000
    out = compensate(seen_at(t_lidar)[None], "lidar", t_lidar, t_cam, tf)
    assert out.applied and out.shift_m == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(out.points[0], seen_at(t_cam), atol=1e-9)
    skipped = compensate(seen_at(t_lidar)[None], "radar", t_lidar, t_cam, tf)
    assert not skipped.applied and "unknown_frame" in skipped.reason


def test_a_refused_transform_is_named_by_the_lookup_until_a_valid_one_arrives():
    from multimodal_perception.fusion.transforms import RejectedFrameError
    from multimodal_perception.ros_pkg.tf_msgs import RejectedTransform, TransformList

    buffer = TransformBuffer()
    good = StampedTransform("base_link", "camera", 0, np.zeros(3), np.array([0, 0, 0, 1.0]))
    refused = TransformList([good])
    refused.rejected = [RejectedTransform("base_link", "lidar", "translation.x=nan: not finite")]
    buffer.apply(refused, static=True)
    buffer.lookup("base_link", "camera")
    with pytest.raises(RejectedFrameError, match=r"base_link -> lidar was refused: translation\.x"):
        buffer.lookup("camera", "lidar")
    with pytest.raises(UnknownFrameError) as unrelated:  # a frame never sent: plain unknown
        buffer.lookup("camera", "radar")
    assert unrelated.value.reason == "unknown_frame"
    lidar = StampedTransform("base_link", "lidar", 0, np.ones(3), np.array([0, 0, 0, 1.0]))
    buffer.set_transform(lidar, static=True)
    assert np.allclose(buffer.lookup("base_link", "lidar")[:3, 3], 1.0)
