"""Radar, tf, CameraInfo and output messages: build, serialise, parse."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import roundtrip
from multimodal_perception.ros_pkg.camera_info import (
    CameraModel,
    camera_info_to_model,
    model_to_camera_info,
)
from multimodal_perception.ros_pkg.errors import (
    EncodingError,
    LayoutError,
    SizeLimitError,
    ValueRangeError,
)
from multimodal_perception.ros_pkg.limits import MessageLimits
from multimodal_perception.ros_pkg.outputs import (
    StatusReport,
    box_markers,
    detection2d_array,
    detection2d_array_to_arrays,
    detection3d_array,
    diagnostic_array,
    label_info,
)
from multimodal_perception.ros_pkg.pointcloud import structured_to_cloud
from multimodal_perception.ros_pkg.radar import (
    RADAR_SCAN,
    points_to_radar_scan,
    radar_cloud_to_points,
    radar_scan_to_points,
    radar_tracks_to_arrays,
)
from multimodal_perception.ros_pkg.stamps import header_stamp_ns, make_header, stamp_to_ns
from multimodal_perception.ros_pkg.tf_msgs import (
    StampedTransform,
    TransformList,
    tf_message_to_transforms,
    transforms_to_tf_message,
)


def test_radar_scan_round_trip_follows_rep103(factory, typestore):
    xyz = np.array([[10.0, 0.0, 0.0], [0.0, 5.0, 0.0], [3.0, -4.0, 1.0]])
    v = np.array([-1.5, 0.0, 2.0])
    amp = np.array([10.0, 3.0, -2.0])
    msg = roundtrip(
        typestore,
        points_to_radar_scan(xyz, v, amp, factory=factory, stamp_ns=123, frame_id="radar"),
    )
    # Positive azimuth is anticlockwise (towards +y, the left).
    assert msg.returns[1].azimuth == pytest.approx(np.pi / 2)
    pts = radar_scan_to_points(msg)
    np.testing.assert_allclose(pts.xyz, xyz, atol=1e-5)
    np.testing.assert_allclose(pts.radial_velocity, v)
    np.testing.assert_allclose(pts.rcs, amp)
    assert pts.stamp_ns == 123 and pts.frame_id == "radar"


def test_radar_scan_drops_nonfinite_returns(factory):
    msg = points_to_radar_scan(
        np.array([[1.0, 0, 0], [2.0, 0, 0]]),
        np.zeros(2),
        np.zeros(2),
        factory=factory,
        stamp_ns=1,
        frame_id="r",
    )
    msg.returns[0].range = float("nan")
    pts = radar_scan_to_points(msg)
    assert len(pts) == 1 and pts.removed == 1
    assert pts.removed_reason == "implausible_radar_returns_removed"
    assert "returns[0].position" in pts.removed_detail
    with pytest.raises(SizeLimitError):
        radar_scan_to_points(msg, MessageLimits(max_radar_returns=1))


def test_radar_pointcloud_finds_velocity_and_rcs_fields(factory, typestore):
    n = 50
    rng = np.random.default_rng(0)
    cols = {
        "x": rng.uniform(1, 50, n).astype("f4"),
        "y": rng.uniform(-10, 10, n).astype("f4"),
        "z": rng.uniform(-1, 2, n).astype("f4"),
        "RCS": rng.uniform(-10, 20, n).astype("f4"),
        "v_r": rng.uniform(-5, 5, n).astype("f4"),
        "v_r_compensated": rng.uniform(-5, 5, n).astype("f4"),
    }
    msg = roundtrip(
        typestore, structured_to_cloud(cols, factory=factory, stamp_ns=9, frame_id="radar")
    )
    pts = radar_cloud_to_points(msg)
    # The ego-motion compensated velocity is preferred when a driver gives both.
    np.testing.assert_array_equal(pts.radial_velocity, cols["v_r_compensated"])
    np.testing.assert_array_equal(pts.rcs, cols["RCS"])
    pts = radar_cloud_to_points(msg, velocity_field="v_r")
    np.testing.assert_array_equal(pts.radial_velocity, cols["v_r"])
    with pytest.raises(LayoutError):
        radar_cloud_to_points(msg, velocity_field="doppler")


def test_radar_tracks(factory, typestore):
    tracks = []
    for i in range(3):
        vec = lambda x, y, z: factory.make("geometry_msgs/msg/Vector3", x=x, y=y, z=z)  # noqa: E731
        tracks.append(
            factory.make(
                "radar_msgs/msg/RadarTrack",
                uuid=factory.make(
                    "unique_identifier_msgs/msg/UUID", uuid=np.arange(16, dtype=np.uint8) + i
                ),
                position=factory.make("geometry_msgs/msg/Point", x=10.0 + i, y=-1.0, z=0.5),
                velocity=vec(-2.0, 0.1 * i, 0.0),
                acceleration=vec(0.0, 0.0, 0.0),
                size=vec(4.0, 2.0, 1.5),
                classification=2,
                position_covariance=np.zeros(6, np.float32),
                velocity_covariance=np.zeros(6, np.float32),
                acceleration_covariance=np.zeros(6, np.float32),
                size_covariance=np.zeros(6, np.float32),
            )
        )
    msg = roundtrip(
        typestore,
        factory.make(
            "radar_msgs/msg/RadarTracks", header=make_header(factory, 77, "radar"), tracks=tracks
        ),
    )
    arrays = radar_tracks_to_arrays(msg)
    assert len(arrays) == 3 and arrays.ids[1] == bytes(np.arange(16, dtype=np.uint8) + 1).hex()
    np.testing.assert_allclose(arrays.position[:, 0], [10, 11, 12])
    np.testing.assert_allclose(arrays.velocity[2], [-2.0, 0.2, 0.0])


def test_tf_round_trip_and_validation(factory, typestore):
    rot = Rotation.from_euler("xyz", [0.1, -0.2, 1.3]).as_quat()
    src = [StampedTransform("base_link", "camera_optical", 5, np.array([1.0, 0.2, 1.5]), rot)]
    msg = roundtrip(typestore, transforms_to_tf_message(src, factory=factory))
    msg.transforms[0].header.frame_id = "/base_link"  # a ROS 1 style leading slash
    (t,) = tf_message_to_transforms(msg)
    assert (t.parent, t.child, t.stamp_ns) == ("base_link", "camera_optical", 5)
    np.testing.assert_allclose(t.rotation_xyzw, rot)
    np.testing.assert_allclose(t.matrix()[:3, 3], [1.0, 0.2, 1.5])
    q = msg.transforms[0].transform.rotation
    q.x = q.y = q.z = q.w = 0.0
    with pytest.raises(ValueRangeError, match=r"transforms\[0\]\.transform\.rotation"):
        tf_message_to_transforms(msg)
    q.w, msg.transforms[0].transform.translation.x = 1.0, float("nan")
    with pytest.raises(ValueRangeError, match="translation"):
        tf_message_to_transforms(msg)
    msg.transforms[0].transform.translation.x = 0.0
    msg.transforms[0].child_frame_id = ""
    with pytest.raises(ValueRangeError, match="child_frame_id"):
        tf_message_to_transforms(msg)


@pytest.mark.parametrize(
    ("model", "d"),
    [
        ("plumb_bob", [-0.3, 0.1, 0.001, -0.002, 0.0]),
        ("rational_polynomial", [0.1, -0.05, 0.001, 0.0, 0.01, 0.2, -0.01, 0.003]),
        ("equidistant", [0.01, -0.002, 0.0003, -0.0001]),
    ],
)
def test_camera_info_models(factory, typestore, model, d):
    info = factory.make(
        "sensor_msgs/msg/CameraInfo",
        header=make_header(factory, 1, "cam_optical"),
        height=480,
        width=640,
        distortion_model=model,
        d=np.array(d),
        k=np.array([500.0, 0, 320, 0, 505.0, 240, 0, 0, 1]),
        r=np.eye(3).reshape(-1),
        p=np.array([490.0, 0, 321, 0, 0, 492.0, 239, 0, 0, 0, 1, 0]),
        binning_x=0,
        binning_y=0,
        roi=factory.make(
            "sensor_msgs/msg/RegionOfInterest",
            x_offset=0,
            y_offset=0,
            height=0,
            width=0,
            do_rectify=False,
        ),
    )
    cam = camera_info_to_model(roundtrip(typestore, info))
    assert cam.distortion_model == model and cam.frame_id == "cam_optical"
    np.testing.assert_array_equal(cam.D, d)
    assert cam.K[0, 0] == 500.0 and cam.P[1, 1] == 492.0
    again = camera_info_to_model(model_to_camera_info(cam, factory=factory, stamp_ns=1))
    np.testing.assert_array_equal(again.P, cam.P)
    info.distortion_model = "kannala_brandt_9"
    with pytest.raises(EncodingError, match="distortion_model"):
        camera_info_to_model(info)
    info.distortion_model, info.d = model, np.array(d[:3])
    with pytest.raises(LayoutError):
        camera_info_to_model(info)
    info.d, info.k = np.array(d), np.zeros(9)
    with pytest.raises(ValueRangeError, match="fx and fy"):
        camera_info_to_model(info)


def test_output_messages_serialise_and_read_back(factory, typestore):
    boxes = np.array([[10.0, 20.0, 50.0, 80.0], [100.0, 5.0, 140.0, 45.5]])
    msg = roundtrip(
        typestore,
        detection2d_array(
            factory,
            stamp_ns=42,
            frame_id="cam",
            boxes_xyxy=boxes,
            class_ids=["car", "person"],
            scores=[0.9, 0.55],
            ids=["3", "8"],
        ),
    )
    back = detection2d_array_to_arrays(msg)
    np.testing.assert_allclose(back.boxes_xyxy, boxes)
    assert back.class_ids == ["car", "person"] and back.ids == ["3", "8"]
    assert back.stamp_ns == 42
    d3 = roundtrip(
        typestore,
        detection3d_array(
            factory,
            stamp_ns=42,
            frame_id="base_link",
            centers=[[10, 1, 0.8]],
            sizes=[[4, 1.8, 1.5]],
            yaws=[np.pi / 2],
            class_ids=["car"],
            scores=[0.9],
        ),
    )
    q = d3.detections[0].bbox.center.orientation
    assert Rotation.from_quat([q.x, q.y, q.z, q.w]).as_euler("xyz")[2] == pytest.approx(np.pi / 2)
    li = roundtrip(
        typestore, label_info(factory, stamp_ns=0, frame_id="cam", class_names=["road", "car"])
    )
    assert [(c.class_id, c.class_name) for c in li.class_map] == [(0, "road"), (1, "car")]
    markers = roundtrip(
        typestore,
        box_markers(
            factory,
            stamp_ns=1,
            frame_id="base_link",
            centers=[[1, 2, 3]],
            sizes=[[1, 1, 1]],
            yaws=[0.0],
            labels=["car #3"],
        ),
    )
    assert [m.action for m in markers.markers] == [3, 0, 0] and markers.markers[2].text == "car #3"
    diag = roundtrip(
        typestore,
        diagnostic_array(
            factory,
            stamp_ns=5,
            statuses=[StatusReport("mmp: sync", 1, "radar missing", values={"dropped.too_old": 3})],
        ),
    )
    assert diag.status[0].level == 1 and diag.status[0].values[0].value == "3"


def test_input_stamps_before_1970_or_unset_are_refused_builders_keep_zero(factory):
    """Findings: a negative stamp crashed the bag writer (OverflowError); stamp 0 reached
    the tracker. Decoding an input refuses both; building and reading outputs keeps 0."""
    xyz, zeros = np.array([[5.0, 0.0, 0.0]]), np.zeros(1)
    for stamp_ns, detail in ((-(10**9), "before 1970"), (0, r"unset stamp \(0\)")):
        msg = points_to_radar_scan(xyz, zeros, zeros, factory=factory, stamp_ns=1, frame_id="r")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        with pytest.raises(ValueRangeError, match=detail) as info:
            header_stamp_ns(msg, RADAR_SCAN)
        assert info.value.field == "header.stamp.sec" and info.value.value == stamp_ns // 10**9
        with pytest.raises(ValueRangeError, match=detail):
            radar_scan_to_points(msg)
    assert stamp_to_ns(make_header(factory, 0, "f").stamp) == 0  # builders and outputs
    msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 1  # sim time just after 0: valid
    assert header_stamp_ns(msg, RADAR_SCAN) == 1


def test_radar_implausible_returns_are_removed_and_counted(factory, typestore):
    """Finding: a return at 1e8 m/s was used as is."""
    xyz = np.array([[10.0, 0, 0], [20.0, 0, 0], [900.0, 0, 0], [30.0, 0, 0]])
    v = np.array([-1.0, 1e8, 2.0, np.nan])  # NaN: velocity unknown, the return is kept
    msg = roundtrip(
        typestore,
        points_to_radar_scan(xyz, v, np.zeros(4), factory=factory, stamp_ns=5, frame_id="r"),
    )
    pts = radar_scan_to_points(msg)
    np.testing.assert_allclose(pts.xyz[:, 0], [10.0, 30.0], rtol=1e-6)
    assert pts.removed == 2 and pts.removed_reason == "implausible_radar_returns_removed"
    assert "returns[1].doppler_velocity=100000000.0" in pts.removed_detail
    assert "1 range over 500 m" in pts.removed_detail
    cols = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "v_r": v}
    cloud = structured_to_cloud(
        {k: np.asarray(c, np.float32) for k, c in cols.items()},
        factory=factory,
        stamp_ns=5,
        frame_id="r",
    )
    cloud_pts = radar_cloud_to_points(cloud)
    assert (
        len(cloud_pts) == 2
        and cloud_pts.removed == 2
        and "data[1].v_r" in str(cloud_pts.removed_detail)
    )
    only_bad = points_to_radar_scan(
        xyz[1:2], v[1:2], np.zeros(1), factory=factory, stamp_ns=5, frame_id="r"
    )
    with pytest.raises(ValueRangeError) as info:
        radar_scan_to_points(only_bad)
    assert info.value.field == "returns[0].doppler_velocity" and info.value.value == 1e8
    assert info.value.reason == "bad_value"
    limits = MessageLimits(max_radar_radial_velocity_mps=0.5)
    assert len(radar_scan_to_points(msg, limits)) == 1  # the limit is the one in limits.py


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"k": [500.0, 0, float("nan"), 0, 500, 240, 0, 0, 1]}, "k[2]"),
        ({"d": [0.1, float("inf"), 0, 0, 0]}, "d[1]"),
        ({"p": [500.0, 0, 320, 0, 0, float("-inf"), 240, 0, 0, 0, 1, 0]}, "p[5]"),
        ({"k": [0.0, 0, 320, 0, 500, 240, 0, 0, 1]}, "k"),
        ({"width": 0}, "width"),
        ({"height": 0}, "height"),
        ({"width": 100_000}, "width"),
    ],
)
def test_camera_info_refuses_nonfinite_zero_focal_and_absurd_sizes(factory, change, field):
    cam = CameraModel(
        640,
        480,
        np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]),
        np.zeros(5),
        np.eye(3),
        np.array([[500.0, 0, 320, 0], [0, 500, 240, 0], [0, 0, 1, 0]]),
        "plumb_bob",
    )
    info = model_to_camera_info(cam, factory=factory, stamp_ns=1)
    for name, value in change.items():
        setattr(info, name, np.array(value, np.float64) if isinstance(value, list) else value)
    with pytest.raises(ValueRangeError) as error:
        camera_info_to_model(info)
    assert error.value.field == field and error.value.msgtype == "sensor_msgs/msg/CameraInfo"


def test_tf_bad_transform_among_good_ones_is_dropped_and_counted(factory):
    """One bad transform used to drop the whole message (and every good one in it)."""
    good = StampedTransform("odom", "base_link", 7, np.zeros(3), np.array([0, 0, 0, 1.0]))
    static = StampedTransform("base_link", "lidar", 0, np.ones(3), np.array([0, 0, 0, 1.0]))
    msg = transforms_to_tf_message([good, good, good, static], factory=factory)
    msg.transforms[0].transform.rotation.w = 0.0  # zero quaternion
    msg.transforms[1].transform.translation.y = float("inf")
    msg.transforms[2].header.stamp.sec = -1
    out = tf_message_to_transforms(msg)
    assert isinstance(out, TransformList) and [t.child for t in out] == ["lidar"]
    assert out[0].stamp_ns == 0  # tf_static at stamp 0 stays valid
    assert out.removed == 3 and out.removed_reason == "bad_transforms_removed"
    assert [p.field for p in out.problems] == [
        "transforms[0].transform.rotation",
        "transforms[1].transform.translation.y",
        "transforms[2].header.stamp.sec",
    ]
    assert "before 1970" in str(out.problems[2]) and "rotation" in out.removed_detail
