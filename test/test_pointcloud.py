"""sensor_msgs/PointCloud2: five+ field layouts, both endians, padding, NaNs, malformed."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import roundtrip
from multimodal_perception.ros_pkg.errors import EncodingError, LayoutError, SizeLimitError
from multimodal_perception.ros_pkg.limits import MessageLimits
from multimodal_perception.ros_pkg.pointcloud import (
    cloud_fields,
    cloud_to_structured,
    cloud_to_xyz,
    structured_to_cloud,
)

RNG = np.random.default_rng(7)
N = 1000


def xyz_source() -> np.ndarray:
    return RNG.uniform(-50, 50, (N, 3)).astype(np.float64)


# Field layouts seen from real drivers and tools.
LAYOUTS = {
    "xyz_f32": lambda p: {
        "x": p[:, 0].astype("f4"),
        "y": p[:, 1].astype("f4"),
        "z": p[:, 2].astype("f4"),
    },
    "velodyne_xyzi_ring_time": lambda p: {
        "x": p[:, 0].astype("f4"),
        "y": p[:, 1].astype("f4"),
        "z": p[:, 2].astype("f4"),
        "intensity": RNG.uniform(0, 255, N).astype("f4"),
        "ring": RNG.integers(0, 64, N).astype("u2"),
        "time": RNG.uniform(0, 0.1, N).astype("f4"),
    },
    "ouster_mixed_types": lambda p: {
        "x": p[:, 0].astype("f4"),
        "y": p[:, 1].astype("f4"),
        "z": p[:, 2].astype("f4"),
        "t": RNG.integers(0, 10**8, N).astype("u4"),
        "reflectivity": RNG.integers(0, 65535, N).astype("u2"),
        "ring": RNG.integers(0, 128, N).astype("u1"),
        "ambient": RNG.integers(0, 65535, N).astype("u2"),
        "range": RNG.integers(0, 10**6, N).astype("u4"),
    },
    "double_xyz_first_field_not_x": lambda p: {
        "intensity": RNG.uniform(0, 1, N).astype("f8"),
        "x": p[:, 0],
        "y": p[:, 1],
        "z": p[:, 2],
    },
    "reordered_zyx_with_ints": lambda p: {
        "label": RNG.integers(-5, 5, N).astype("i1"),
        "z": p[:, 2].astype("f4"),
        "y": p[:, 1].astype("f4"),
        "x": p[:, 0].astype("f4"),
        "id": RNG.integers(-(10**6), 10**6, N).astype("i4"),
        "s": RNG.integers(-300, 300, N).astype("i2"),
    },
    "xyz_as_count3_subarray": lambda p: {
        "xyz": p.astype("f4"),
        "rgb": RNG.integers(0, 2**24, N).astype("u4"),
    },
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 7])
def test_layouts_parse_to_source_xyz(factory, typestore, layout, big_endian, pad):
    src = xyz_source()
    columns = LAYOUTS[layout](src)
    packed = sum(c.dtype.itemsize * (1 if c.ndim == 1 else c.shape[1]) for c in columns.values())
    msg = structured_to_cloud(
        columns,
        factory=factory,
        stamp_ns=3,
        frame_id="lidar",
        big_endian=big_endian,
        point_step=packed + pad,
    )
    msg = roundtrip(typestore, msg)
    assert msg.point_step == packed + pad and bool(msg.is_bigendian) == big_endian
    if layout == "xyz_as_count3_subarray":
        pts = cloud_to_structured(msg)
        np.testing.assert_array_equal(pts["xyz"], src.astype("f4"))
        return
    xyz, index = cloud_to_xyz(msg)
    assert xyz.dtype == np.float32 and xyz.dtype.isnative and xyz.shape == (N, 3)
    assert not np.shares_memory(xyz, msg.data)  # a private copy, safe to keep
    np.testing.assert_array_equal(xyz, src.astype(np.float32))
    np.testing.assert_array_equal(index, np.arange(N))
    others = [name for name in columns if name not in "xyz"]
    got = cloud_fields(msg, others, dtype=np.float64)
    for name in others:
        np.testing.assert_array_equal(got[name], columns[name].astype(np.float64))


def test_organised_cloud_with_nans_and_row_padding(factory, typestore):
    h, w = 16, 50
    src = RNG.uniform(-20, 20, (h * w, 3)).astype(np.float32)
    src[::7] = np.nan  # no return: organised clouds keep the cell as NaN
    src[3, 1] = np.inf
    msg = structured_to_cloud(
        {"x": src[:, 0], "y": src[:, 1], "z": src[:, 2]},
        factory=factory,
        stamp_ns=1,
        frame_id="lidar",
        height=h,
        point_step=16,
    )
    assert not msg.is_dense and msg.height == h and msg.width == w
    # Pad each row by 24 bytes, as some drivers align rows.
    rows = np.asarray(msg.data).reshape(h, msg.row_step)
    padded = np.concatenate([rows, np.full((h, 24), 0xAB, np.uint8)], axis=1)
    msg.data, msg.row_step = padded.reshape(-1), msg.row_step + 24
    msg = roundtrip(typestore, msg)
    xyz, index = cloud_to_xyz(msg)
    keep = np.isfinite(src).all(axis=1)
    np.testing.assert_array_equal(index, np.flatnonzero(keep))
    np.testing.assert_array_equal(xyz, src[keep])
    raw, _ = cloud_to_xyz(msg, remove_nonfinite=False)
    assert raw.shape == (h * w, 3) and np.isnan(raw[::7]).all()


def test_big_endian_bytes_are_really_big_endian(factory):
    msg = structured_to_cloud(
        {"x": np.array([1.0], "f4"), "y": np.array([2.0], "f4"), "z": np.array([3.0], "f4")},
        factory=factory,
        stamp_ns=0,
        frame_id="l",
        big_endian=True,
    )
    assert bytes(msg.data[:4]) == np.array([1.0], ">f4").tobytes()


class Field:
    def __init__(self, name, offset, datatype, count=1):
        self.name, self.offset, self.datatype, self.count = name, offset, datatype, count


class FakeCloud:
    def __init__(self, **kw):
        self.height, self.width, self.is_bigendian, self.is_dense = 1, 4, False, True
        self.fields = [Field("x", 0, 7), Field("y", 4, 7), Field("z", 8, 7)]
        self.point_step, self.row_step = 12, 48
        self.data = bytes(48)
        self.__dict__.update(kw)


@pytest.mark.parametrize(
    ("kw", "error", "field_name"),
    [
        ({"point_step": 8, "row_step": 32, "data": bytes(32)}, LayoutError, "fields[2].offset"),
        (
            {"fields": [Field("x", 0, 7), Field("y", 4, 7), Field("z", 10, 7)]},
            LayoutError,
            "fields[2].offset",
        ),
        (
            {"fields": [Field("x", -4, 7), Field("y", 4, 7), Field("z", 8, 7)]},
            LayoutError,
            "fields[0].offset",
        ),
        (
            {"fields": [Field("x", 0, 9), Field("y", 4, 7), Field("z", 8, 7)]},
            EncodingError,
            "fields[0].datatype",
        ),
        ({"data": bytes(47)}, LayoutError, "data"),
        ({"row_step": 40, "data": bytes(40)}, LayoutError, "row_step"),
        ({"width": 10**9, "row_step": 12 * 10**9}, SizeLimitError, "width*height"),
        ({"width": 100, "row_step": 10**10, "data": bytes(0)}, SizeLimitError, "row_step"),
        ({"fields": [Field("x", 0, 7), Field("y", 4, 7)], "point_step": 12}, LayoutError, "fields"),
        ({"point_step": 0}, LayoutError, "point_step"),
    ],
)
def test_malformed_cloud_raises_typed_error(kw, error, field_name):
    with pytest.raises(error) as info:
        cloud_to_xyz(FakeCloud(**kw), limits=MessageLimits(max_cloud_bytes=10**9))
    assert info.value.field == field_name, str(info.value)
    assert info.value.msgtype == "sensor_msgs/msg/PointCloud2"


def test_size_cap_checked_before_allocation():
    # A cloud declaring 10^9 points with no data: refused by the cap, nothing allocated.
    with pytest.raises(SizeLimitError):
        cloud_to_xyz(FakeCloud(width=10**9, row_step=12 * 10**9, data=b""))


@pytest.mark.parametrize(
    ("kw", "error", "field_name"),
    [
        # A uint32 point_step past numpy's int itemsize used to escape as a ValueError.
        (
            {"point_step": 2**31, "row_step": 2**31, "fields": [Field("x", 2**31 - 12, 7)]},
            SizeLimitError,
            "point_step",
        ),
        # x with count 3 used to fail in a numpy broadcast (ValueError).
        (
            {
                "fields": [Field("x", 0, 7, 3), Field("y", 12, 7), Field("z", 16, 7)],
                "point_step": 20,
                "row_step": 80,
                "data": bytes(80),
            },
            LayoutError,
            "fields[0].count",
        ),
        ({"fields": [Field(f"f{i}", 0, 2) for i in range(300)]}, SizeLimitError, "fields"),
    ],
)
def test_layout_gaps_are_typed_errors(kw, error, field_name):
    with pytest.raises(error) as info:
        cloud_to_xyz(FakeCloud(**kw))
    assert info.value.field == field_name, str(info.value)


@pytest.mark.parametrize(("height", "width"), [(0, 0), (1, 0), (0, 7)])
def test_empty_cloud_has_no_points(height, width):
    cloud = FakeCloud(height=height, width=width, row_step=12 * width, data=b"")
    xyz, index = cloud_to_xyz(cloud)
    assert xyz.shape == (0, 3) and xyz.dtype == np.float32 and index.shape == (0,)
