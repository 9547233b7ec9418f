"""Every input decoder, fuzzed: a well-formed result or a MessageError, never anything else,
and nothing decoded past the caps (small caps here, so the property is checkable).

Messages are built with the project's rosbags typestore and sent through CDR, so field
values are what a bag can hold (uint32 sizes, int32 seconds, float32 radar values).
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import roundtrip
from multimodal_perception.ros_pkg.camera_info import camera_info_to_model
from multimodal_perception.ros_pkg.errors import (
    EncodingError,
    LayoutError,
    MessageError,
    SizeLimitError,
)
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.image import (
    ENCODINGS,
    compressed_to_bgr8,
    encoding_info,
    image_to_array,
    image_to_bgr8,
)
from multimodal_perception.ros_pkg.limits import MessageLimits
from multimodal_perception.ros_pkg.pointcloud import cloud_to_xyz, structured_to_cloud
from multimodal_perception.ros_pkg.radar import (
    radar_cloud_to_points,
    radar_scan_to_points,
    radar_tracks_to_points,
)
from multimodal_perception.ros_pkg.stamps import header_stamp_ns
from multimodal_perception.ros_pkg.tf_msgs import TransformList, tf_message_to_transforms
from multimodal_perception.ros_pkg.typestore import get_project_typestore

TS = get_project_typestore()
F = RosbagsFactory(TS)
LIMITS = MessageLimits(
    max_image_side=256,
    max_image_bytes=256 * 256 * 9,
    max_compressed_bytes=200_000,
    max_jpeg_header_segments=16,
    max_cloud_points=4096,
    max_cloud_bytes=256 * 1024,
    max_cloud_fields=16,
    max_radar_returns=64,
    max_transforms=16,
)


def fuzz(examples: int) -> settings:
    """Bounded, no deadline (CI machines are shared), no example database on disk."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


U32 = st.integers(0, 2**32 - 1)
SIDE = st.integers(1, 12) | st.integers(1, 12) | st.just(0) | U32  # mostly small, valid
SEC = st.integers(1, 2**31 - 1) | st.integers(-2, 2) | st.integers(-(2**31), 2**31 - 1)
F32 = st.one_of(
    st.floats(width=32),
    st.sampled_from([0.0, 1e8, -1e8, 149.0, -151.0, 499.0, 501.0, 1e30]),
    st.floats(-100, 100, width=32),
)


def header(sec: int = 1, nanosec: int = 0, frame: str = "f") -> Any:
    stamp = F.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)
    return F.make("std_msgs/msg/Header", stamp=stamp, frame_id=frame)


def noise(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def decode(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """The decoder's result, or None for a MessageError; any other exception fails."""
    try:
        out = fn(*args, **kw)
    except MessageError as exc:
        assert exc.field and exc.msgtype and exc.reason  # names type, field and value
        event(f"{fn.__name__}: {type(exc).__name__} on {exc.field.split('[')[0]}")
        return None
    event(f"{fn.__name__}: decoded")
    return out


def traced(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the peak bytes Python/numpy allocated while it ran."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- raw images -------------------------------------------------------------------------

ENCODING = st.sampled_from(
    [*ENCODINGS, "8UC1", "8UC3", "8UC4", "16UC1", "32FC1", "64FC3", "8SC2", "8FC1", "8UC300", "?"]
)


@fuzz(200)
@given(
    encoding=ENCODING,
    height=SIDE,
    width=SIDE,
    pad=st.integers(0, 5) | st.integers(0, 5) | U32,
    data_delta=st.one_of(st.just(0), st.integers(-3, 3)),
    big=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_image(encoding, height, width, pad, data_delta, big, seed):
    try:
        bpp = encoding_info(encoding).bytes_per_pixel
    except MessageError:
        bpp = 1
    step = min(width * bpp + pad, 2**32 - 1)
    size = max(0, min(step * height, 1 << 20) + data_delta)
    msg = roundtrip(
        TS,
        F.make(
            "sensor_msgs/msg/Image",
            header=header(),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=int(big),
            step=step,
            data=noise(seed, size),
        ),
    )
    pixels, peak = traced(lambda: decode(image_to_array, msg, LIMITS))
    assert peak <= 2 * LIMITS.max_image_bytes + 65536
    bgr, peak = traced(lambda: decode(image_to_bgr8, msg, LIMITS))
    assert peak <= 4 * LIMITS.max_image_bytes + 65536
    if pixels is not None:
        info = encoding_info(encoding)
        assert 0 < height <= LIMITS.max_image_side and 0 < width <= LIMITS.max_image_side
        assert pixels.shape[:2] == (height, width) and pixels.dtype == info.dtype
        assert pixels.dtype.isnative
    if bgr is not None:
        assert bgr.shape == (height, width, 3) and bgr.dtype == np.uint8


# --- compressed images -------------------------------------------------------------------

SMALL = (np.mgrid[0:16, 0:24].sum(axis=0)[:, :, None] * [3, 5, 7] % 256).astype(np.uint8)


def encoded(ext: str, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    return cv2.imencode(ext, SMALL, params)[1].tobytes()


def sof_offset(jpeg: bytes) -> int:
    """Where the frame header is, by an independent walk of the segments."""
    i = 2
    while jpeg[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return i


def craft_jpeg(
    width: int, height: int, app_bytes: int = 0, progressive: bool = False, fill: int = 0
) -> bytes:
    """A real JPEG whose SOF declares ``width x height``, after ``app_bytes`` of APP5
    segments and ``fill`` 0xFF fill bytes."""
    base = bytearray(encoded(".jpg", progressive))
    sof = sof_offset(bytes(base))
    base[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    segments = b""
    while app_bytes > 0:
        n = min(app_bytes, 65533)
        segments += b"\xff\xe5" + (n + 2).to_bytes(2, "big") + bytes(n)
        app_bytes -= n
    return bytes(base[:2] + segments + base[2:sof] + b"\xff" * fill + base[sof:])


def craft_png(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A real PNG whose IHDR (with a valid CRC) declares the given size and format."""
    png = bytearray(encoded(".png"))
    png[16:26] = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, colour])
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    return bytes(png)


def compressed(data: bytes, fmt: str = "jpeg") -> Any:
    msg = F.make(
        "sensor_msgs/msg/CompressedImage",
        header=header(),
        format=fmt,
        data=np.frombuffer(data, np.uint8),
    )
    return roundtrip(TS, msg)


@contextmanager
def opencv_guard(allowed: Callable[[], bool]) -> Iterator[list[int]]:
    """Fail the moment OpenCV is asked to decode a stream ``allowed()`` refuses."""
    real, calls = cv2.imdecode, []

    def spy(buf: np.ndarray, flags: int) -> Any:
        assert allowed(), "cv2.imdecode called on a stream declaring a size over the caps"
        calls.append(len(buf))
        return real(buf, flags)

    with mock.patch.object(cv2, "imdecode", spy):
        yield calls


def within_caps(width: int, height: int, limits: MessageLimits) -> bool:
    side_ok = max(width, height) <= limits.max_image_side
    return side_ok and width * height * 3 <= limits.max_image_bytes


@fuzz(150)
@given(
    kind=st.sampled_from(["jpeg", "jpeg_progressive", "png"]),
    width=st.one_of(st.integers(0, 300), st.integers(0, 65535)),
    height=st.one_of(st.integers(0, 300), st.integers(0, 65535)),
    app_bytes=st.one_of(st.just(0), st.integers(0, 70_000)),
    fill=st.integers(0, 3),
    png_format=st.tuples(st.sampled_from([1, 8, 16, 3]), st.sampled_from([0, 2, 3, 4, 6, 5])),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    seed=st.integers(0, 2**16),
)
def test_fuzz_crafted_headers(kind, width, height, app_bytes, fill, png_format, cut, seed):
    if kind == "png":
        data = craft_png(width, height, *png_format)
        header_end = 33
    else:
        data = craft_jpeg(width, height, app_bytes, kind.endswith("progressive"), fill)
        sof = b"\xff\xc2" if kind.endswith("progressive") else b"\xff\xc0"
        header_end = data.index(sof + b"\x00\x11\x08" + height.to_bytes(2, "big")) + 19
    if cut is not None:  # garbage over the scan data, or a truncated stream (header kept)
        data = data[: max(len(data) - cut, header_end)] + noise(seed, cut % 64).tobytes()
    with opencv_guard(lambda: within_caps(width, height, LIMITS)):
        image = decode(compressed_to_bgr8, compressed(data, kind), LIMITS)
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] in ((height, width), (width, height))


PREFIXES = [b"", b"\xff\xd8", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"RIFF"]


@fuzz(200)
@given(
    prefix=st.one_of(
        st.sampled_from(PREFIXES),
        st.builds(lambda n: encoded(".jpg")[:n], st.integers(0, 700)),
        st.builds(lambda n: encoded(".png")[:n], st.integers(0, 200)),
    ),
    body=st.binary(max_size=300),
    fmt=st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8", "rgb8; compressedDepth"]),
)
def test_fuzz_compressed_bytes(prefix, body, fmt):
    data = prefix + body
    image = decode(compressed_to_bgr8, compressed(data, fmt), LIMITS)
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert max(image.shape[:2]) <= LIMITS.max_image_side


def test_jpeg_size_declared_past_64_kib_is_refused_before_decoding():
    """Finding: the SOF after a 70 KiB APP segment was never read (the header peek stopped
    at 64 KiB): 60000x60000 ended in an uncaught cv2.error, smaller sizes were decoded."""
    for limits, side in ((MessageLimits(), 60000), (LIMITS, 2000)):
        msg = compressed(craft_jpeg(side, side, app_bytes=70 * 1024))
        with opencv_guard(lambda: False), pytest.raises(SizeLimitError) as info:
            compressed_to_bgr8(msg, limits)
        assert info.value.field == "data" and f"{side}x{side}" in str(info.value)


def test_png_decoded_size_is_capped_not_only_its_side():
    """Finding: a 16384x16384 16-bit RGBA PNG passed the side cap and took 3.7 GB."""
    msg = compressed(craft_png(16384, 16384, depth=16, colour=6), "png")
    with opencv_guard(lambda: False), pytest.raises(SizeLimitError, match="decoding needs"):
        compressed_to_bgr8(msg)


def test_stream_opencv_would_read_as_another_format_is_refused():
    """A BMP header sent as "jpeg" declaring 60000x60000: OpenCV would decode it by its
    own signature, past every cap; only JPEG and PNG are handed to OpenCV."""
    bmp = b"BM" + bytes(16) + (60000).to_bytes(4, "little") * 2 + bytes(40)
    with opencv_guard(lambda: False), pytest.raises(EncodingError, match="BMP") as info:
        compressed_to_bgr8(compressed(bmp))
    assert info.value.field == "data"
    with opencv_guard(lambda: False), pytest.raises(LayoutError, match="neither"):
        compressed_to_bgr8(compressed(bytes(range(256)) * 8))


def test_opencv_errors_become_layout_errors():
    def broken(buf: np.ndarray, flags: int) -> None:
        raise cv2.error("OpenCV(5.0) imgcodecs: out of memory")

    with mock.patch.object(cv2, "imdecode", broken), pytest.raises(LayoutError) as info:
        compressed_to_bgr8(compressed(encoded(".jpg")))
    assert info.value.field == "data" and "out of memory" in str(info.value)


@pytest.mark.parametrize("size", [(0, 16), (16, 0)])
def test_zero_sized_compressed_images_are_layout_errors(size):
    for data in (craft_jpeg(*size), craft_png(*size)):
        with opencv_guard(lambda: False), pytest.raises(LayoutError, match="empty"):
            compressed_to_bgr8(compressed(data))


# --- point clouds -------------------------------------------------------------------------

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
