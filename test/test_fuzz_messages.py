"""PointCloud2, radar, CameraInfo, tf and header decoders, fuzzed: a well-formed result
or a MessageError, never anything else. Messages go through CDR, so field values are
what a bag can hold (uint32 sizes, int32 seconds, float32 radar values)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fuzz_common import (
    F32,
    LIMITS,
    SEC,
    SIDE,
    TS,
    U32,
    F,
    compressed,
    decode,
    encoded,
    fuzz,
    header,
    noise,
    traced,
)
from hypothesis import given
from hypothesis import strategies as st

from conftest import roundtrip
from multimodal_perception.ros_pkg.camera_info import camera_info_to_model
from multimodal_perception.ros_pkg.pointcloud import cloud_to_xyz, structured_to_cloud
from multimodal_perception.ros_pkg.radar import (
    radar_cloud_to_points,
    radar_scan_to_points,
    radar_tracks_to_points,
)
from multimodal_perception.ros_pkg.stamps import header_stamp_ns
from multimodal_perception.ros_pkg.tf_msgs import TransformList, tf_message_to_transforms

FIELD = st.tuples(
    st.sampled_from(["x", "y", "z", "intensity", "", "x"]),
    st.integers(0, 24) | U32,
    st.integers(0, 10),
    st.integers(0, 2) | U32,
)
XYZ = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]


def point_fields(specs: list[tuple[str, int, int, int]]) -> list[Any]:
    return [
        F.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
        for n, o, d, c in specs
    ]


@fuzz(200)
@given(
    specs=st.one_of(
        st.just(XYZ), st.builds(lambda extra: XYZ + extra, st.lists(FIELD, max_size=3))
    ),
    point_step=st.one_of(st.just(None), st.integers(0, 40), U32),
    height=SIDE,
    width=SIDE,
    pad=st.integers(0, 8) | U32,
    data_delta=st.just(0) | st.integers(-4, 4),
    big=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_pointcloud(specs, point_step, height, width, pad, data_delta, big, seed):
    step = 12 if point_step is None else point_step
    row_step = min(width * step + pad, 2**32 - 1)
    size = max(0, min(row_step * height, 1 << 20) + data_delta)
    msg = roundtrip(
        TS,
        F.make(
            "sensor_msgs/msg/PointCloud2",
            header=header(),
            height=height,
            width=width,
            fields=point_fields(specs),
            is_bigendian=big,
            point_step=step,
            row_step=row_step,
            data=noise(seed, size),  # random bytes: NaN/Inf x/y/z among them
            is_dense=False,
        ),
    )
    out, peak = traced(lambda: decode(cloud_to_xyz, msg, limits=LIMITS))
    assert peak <= 3 * LIMITS.max_cloud_bytes + 65536
    if out is not None:
        xyz, index = out
        n = height * width
        assert n <= LIMITS.max_cloud_points and xyz.dtype == np.float32
        assert xyz.shape == (len(index), 3) and np.isfinite(xyz).all()
        assert index.dtype == np.int64 and (np.diff(index) > 0).all()
        assert len(index) == 0 or 0 <= index[0] <= index[-1] < n


# --- radar ---------------------------------------------------------------------------------


def check_radar(points: Any, total: int) -> None:
    n = len(points)
    assert points.xyz.shape == (n, 3) and points.xyz.dtype == np.float32
    assert points.radial_velocity.shape == (n,) and points.rcs.shape == (n,)
    assert np.isfinite(points.xyz).all()
    assert (np.linalg.norm(points.xyz, axis=1) <= LIMITS.max_radar_range_m * (1 + 1e-6)).all()
    v = points.radial_velocity
    assert not np.isinf(v).any()
    assert (np.abs(v[np.isfinite(v)]) <= LIMITS.max_radar_radial_velocity_mps).all()
    assert points.removed == total - n and (n > 0 or total == 0)
    assert bool(points.removed_reason) == (points.removed > 0)
    assert points.stamp_ns > 0


@fuzz(150)
@given(
    returns=st.lists(st.tuples(F32, F32, F32, F32, F32), max_size=8),
    sec=SEC,
    nanosec=st.integers(0, 10) | U32,
)
def test_fuzz_radar_scan(returns, sec, nanosec):
    items = [
        F.make(
            "radar_msgs/msg/RadarReturn",
            range=r,
            azimuth=a,
            elevation=e,
            doppler_velocity=v,
            amplitude=p,
        )
        for r, a, e, v, p in returns
    ]
    msg = roundtrip(
        TS, F.make("radar_msgs/msg/RadarScan", header=header(sec, nanosec), returns=items)
    )
    points = decode(radar_scan_to_points, msg, LIMITS)
    if points is not None:
        check_radar(points, len(returns))


@fuzz(100)
@given(
    columns=st.lists(st.tuples(F32, F32, F32, F32, F32), max_size=8),
    velocity=st.sampled_from(["v_r", "doppler", "v_r_compensated", None]),
)
def test_fuzz_radar_cloud(columns, velocity):
    table = np.array(columns, dtype=np.float32).reshape(-1, 5)
    cols = {name: table[:, i] for i, name in enumerate(["x", "y", "z", "rcs", velocity])}
    cols.pop(None, None)
    msg = roundtrip(TS, structured_to_cloud(cols, factory=F, stamp_ns=7, frame_id="radar"))
    points = decode(radar_cloud_to_points, msg, limits=LIMITS)
    if points is not None:
        check_radar(points, len(columns))
        assert points.velocity_field == (velocity or "")


@fuzz(100)
@given(tracks=st.lists(st.tuples(*[F32] * 9), max_size=5))
def test_fuzz_radar_tracks(tracks):
    def vec(kind: str, x: float, y: float, z: float) -> Any:
        return F.make(f"geometry_msgs/msg/{kind}", x=x, y=y, z=z)

    zeros = np.zeros(6, np.float32)
    items = [
        F.make(
            "radar_msgs/msg/RadarTrack",
            uuid=F.make("unique_identifier_msgs/msg/UUID", uuid=np.full(16, i, np.uint8)),
            position=vec("Point", *t[0:3]),
            velocity=vec("Vector3", *t[3:6]),
            acceleration=vec("Vector3", 0.0, 0.0, 0.0),
            size=vec("Vector3", *t[6:9]),
            classification=0,
            position_covariance=zeros,
            velocity_covariance=zeros,
            acceleration_covariance=zeros,
            size_covariance=zeros,
        )
        for i, t in enumerate(tracks)
    ]
    msg = roundtrip(TS, F.make("radar_msgs/msg/RadarTracks", header=header(), tracks=items))
    points = decode(radar_tracks_to_points, msg, LIMITS)
    if points is not None:
        check_radar(points, len(tracks))


# --- camera info, tf, stamps -------------------------------------------------------------

F64 = st.one_of(st.floats(), st.floats(-1000, 1000), st.sampled_from([0.0, 1.0, 500.0]))


K = [500.0, 0, 320, 0, 500, 240, 0, 0, 1]
P = [500.0, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0]


def mutated(base: list[float]) -> st.SearchStrategy[list[float]]:
    """``base`` with up to two elements replaced by arbitrary floats (NaN, Inf, 0 ...)."""

    def apply(changes: list[tuple[int, float]]) -> list[float]:
        out = list(base)
        for i, value in changes:
            out[i % len(out)] = value
        return out

    return st.lists(st.tuples(st.integers(0, 99), F64), max_size=2).map(apply)


@fuzz(200)
@given(
    k=mutated(K),
    p=mutated(P),
    d=st.sampled_from([0, 4, 5, 8, 3]).flatmap(lambda n: st.lists(F64, min_size=n, max_size=n)),
    model=st.sampled_from(["", "plumb_bob", "rational_polynomial", "equidistant", "none", "?"]),
    width=SIDE,
    height=SIDE,
)
def test_fuzz_camera_info(k, p, d, model, width, height):
    roi = F.make(
        "sensor_msgs/msg/RegionOfInterest",
        x_offset=0,
        y_offset=0,
        height=0,
        width=0,
        do_rectify=False,
    )
    msg = roundtrip(
        TS,
        F.make(
            "sensor_msgs/msg/CameraInfo",
            header=header(),
            height=height,
            width=width,
            distortion_model=model,
            d=np.array(d, np.float64),
            k=np.array(k, np.float64),
            r=np.eye(3).reshape(-1),
            p=np.array(p, np.float64),
            binning_x=0,
            binning_y=0,
            roi=roi,
        ),
    )
    cam = decode(camera_info_to_model, msg, LIMITS)
    if cam is not None:
        for matrix in (cam.K, cam.D, cam.R, cam.P):
            assert np.isfinite(matrix).all()
        assert cam.K[0, 0] > 0 and cam.K[1, 1] > 0 and cam.P[0, 0] > 0 and cam.P[1, 1] > 0
        assert 0 < cam.width <= LIMITS.max_image_side and 0 < cam.height <= LIMITS.max_image_side


FRAME = st.sampled_from(["", "/", "base_link", "/odom", "camera"])


@fuzz(200)
@given(
    items=st.lists(
        st.tuples(FRAME, FRAME, SEC, st.lists(F64, min_size=7, max_size=7) | st.just([0.0] * 7)),
        max_size=5,
    )
)
def test_fuzz_tf(items):
    def transform(parent: str, child: str, sec: int, v: list[float]) -> Any:
        t = F.make("geometry_msgs/msg/Vector3", x=v[0], y=v[1], z=v[2])
        q = F.make("geometry_msgs/msg/Quaternion", x=v[3], y=v[4], z=v[5], w=v[6])
        return F.make(
            "geometry_msgs/msg/TransformStamped",
            header=header(sec, 0, parent),
            child_frame_id=child,
            transform=F.make("geometry_msgs/msg/Transform", translation=t, rotation=q),
        )

    msg = roundtrip(TS, F.make("tf2_msgs/msg/TFMessage", transforms=[transform(*i) for i in items]))
    out = decode(tf_message_to_transforms, msg, LIMITS)
    if out is None:
        assert items  # an empty message is an empty list; only all-bad messages raise
        return
    assert isinstance(out, TransformList) and len(out) + out.removed == len(items)
    for t in out:
        assert t.parent and t.child and t.parent != t.child and t.stamp_ns >= 0
        assert np.isfinite(t.translation).all() and np.isclose(np.linalg.norm(t.rotation_xyzw), 1)


@fuzz(100)
@given(sec=SEC, nanosec=st.integers(0, 10) | U32)
def test_fuzz_header_stamp(sec, nanosec):
    msg = compressed(encoded(".png"))
    msg.header = header(sec, nanosec)
    stamp = decode(header_stamp_ns, msg, "sensor_msgs/msg/CompressedImage", LIMITS)
    assert (stamp is not None) == (sec >= 0 and nanosec < 10**9 and (sec, nanosec) != (0, 0))
    if stamp is not None:
        assert stamp == sec * 10**9 + nanosec
