"""sensor_msgs/PointCloud2 to and from numpy, without Python loops over points.

A cloud's ``fields`` become a numpy structured dtype (names, offsets, byte order,
``itemsize = point_step``), so reading is a strided view on the message buffer. Any
field set and offsets, every PointField datatype, ``count > 1``, point_step padding,
row_step padding, both endians and organised clouds are handled; NaN/Inf points are
removed on request with the indices of the kept points returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import EncodingError, LayoutError, SizeLimitError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .stamps import make_header

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"

# sensor_msgs/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
DATATYPE_TO_NUMPY = {
    INT8: np.dtype("i1"),
    UINT8: np.dtype("u1"),
    INT16: np.dtype("i2"),
    UINT16: np.dtype("u2"),
    INT32: np.dtype("i4"),
    UINT32: np.dtype("u4"),
    FLOAT32: np.dtype("f4"),
    FLOAT64: np.dtype("f8"),
}
NUMPY_TO_DATATYPE = {(dt.kind, dt.itemsize): code for code, dt in DATATYPE_TO_NUMPY.items()}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    offset: int
    datatype: int
    count: int = 1


def field_specs(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> list[FieldSpec]:
    if len(msg.fields) > limits.max_cloud_fields:
        raise SizeLimitError(
            POINTCLOUD2, "fields", len(msg.fields), f"over the cap of {limits.max_cloud_fields}"
        )
    specs = []
    for i, f in enumerate(msg.fields):
        datatype = int(f.datatype)
        if datatype not in DATATYPE_TO_NUMPY:
            raise EncodingError(POINTCLOUD2, f"fields[{i}].datatype", datatype, "must be 1..8")
        # count 0 appears in the wild (some drivers); PCL reads it as 1.
        specs.append(FieldSpec(str(f.name), int(f.offset), datatype, max(int(f.count), 1)))
    return specs


def cloud_dtype(specs: Sequence[FieldSpec], point_step: int, big_endian: bool) -> np.dtype:
    """The structured dtype of one point; validates offsets against ``point_step``."""
    if point_step <= 0:
        raise LayoutError(POINTCLOUD2, "point_step", point_step, "must be positive")
    order = ">" if big_endian else "<"
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    for i, spec in enumerate(specs):
        base = DATATYPE_TO_NUMPY[spec.datatype].newbyteorder(order)
        size = base.itemsize * spec.count
        if spec.offset < 0 or spec.offset + size > point_step:
            raise LayoutError(
                POINTCLOUD2,
                f"fields[{i}].offset",
                spec.offset,
                f"field {spec.name!r} ({size} bytes) lies outside the point of "
                f"point_step={point_step} bytes",
            )
        if spec.name in names:
            raise LayoutError(POINTCLOUD2, f"fields[{i}].name", spec.name, "duplicate field name")
        if not spec.name:
            continue  # unnamed padding fields (PCL writes "_") carry no data we read
        names.append(spec.name)
        formats.append(base if spec.count == 1 else (base, (spec.count,)))
        offsets.append(spec.offset)
    return np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}
    )


def _checked_layout(msg: Any, limits: MessageLimits) -> tuple[np.dtype, np.ndarray, int, int, int]:
    """Sizes against each other, the data length and the caps, before any allocation.

    An empty cloud (``width*height == 0``) is valid and has no points.
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    for name, value in (("height", height), ("width", width), ("row_step", row_step)):
        if value < 0:
            raise LayoutError(POINTCLOUD2, name, value, "must not be negative")
    if height * width > limits.max_cloud_points:
        raise SizeLimitError(
            POINTCLOUD2,
            "width*height",
            height * width,
            f"over the cap of {limits.max_cloud_points} points",
        )
    for name, value in (("point_step", point_step), ("row_step", row_step)):
        if value > limits.max_cloud_bytes:
            raise SizeLimitError(
                POINTCLOUD2, name, value, f"over the cap of {limits.max_cloud_bytes} bytes"
            )
    if row_step * height > limits.max_cloud_bytes:
        raise SizeLimitError(
            POINTCLOUD2,
            "row_step",
            row_step,
            f"row_step*height = {row_step * height} over the cap of {limits.max_cloud_bytes} bytes",
        )
    dtype = cloud_dtype(field_specs(msg, limits), point_step, bool(msg.is_bigendian))
    if row_step < width * point_step:
        raise LayoutError(
            POINTCLOUD2,
            "row_step",
            row_step,
            f"smaller than width*point_step = {width}*{point_step} = {width * point_step}",
        )
    data = msg.data
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        buf = data.reshape(-1)
    else:
        try:
            try:
                buf = np.frombuffer(data, dtype=np.uint8)
            except TypeError:
                buf = np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LayoutError(
                POINTCLOUD2, "data", type(data).__name__, f"not bytes: {exc}"
            ) from None
    if buf.size != row_step * height:
        raise LayoutError(
            POINTCLOUD2,
            "data",
            f"<{buf.size} bytes>",
            f"length is not row_step*height = {row_step}*{height} = {row_step * height}",
        )
    return dtype, buf, height, width, row_step


def cloud_to_structured(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """All points as a structured array of shape (height*width,), a view where possible."""
    dtype, buf, height, width, row_step = _checked_layout(msg, limits)
    if height * width == 0:
        return np.zeros(0, dtype=dtype)
    grid = np.ndarray((height, width), dtype=dtype, buffer=buf, strides=(row_step, dtype.itemsize))
    return grid.reshape(-1)  # a copy only when rows are padded


def cloud_field_names(msg: Any) -> list[str]:
    return [str(f.name) for f in msg.fields]


def cloud_to_xyz(
    msg: Any,
    *,
    remove_nonfinite: bool = True,
    fields: tuple[str, str, str] = ("x", "y", "z"),
    limits: MessageLimits = DEFAULT_LIMITS,
) -> tuple[np.ndarray, np.ndarray]:
    """Points as float32 (N, 3) and the indices of those points in the cloud.

    For the layout nearly every driver uses (x, y, z adjacent native float32) the
    result is a strided (N, 3) view on one private copy of the point bytes: a single
    memcpy instead of a per-point gather. Other layouts are gathered into a contiguous
    array. With ``remove_nonfinite`` (default) points with a NaN or Inf coordinate are
    dropped whatever ``is_dense`` claims; the indices map rows back to the cloud
    (row-major for organised clouds) so other fields can be gathered.
    """
    dtype, buf, height, width, row_step = _checked_layout(msg, limits)
    missing = [name for name in fields if name not in (dtype.names or ())]
    if missing:
        raise LayoutError(
            POINTCLOUD2, "fields", cloud_field_names(msg), f"no field named {missing[0]!r}"
        )
    kinds = [dtype.fields[name][0] for name in fields]
    for name, kind in zip(fields, kinds, strict=True):
        if kind.shape != ():
            index = cloud_field_names(msg).index(name)
            raise LayoutError(
                POINTCLOUD2, f"fields[{index}].count", kind.shape[0], f"{name!r} must be a scalar"
            )
    n = height * width
    if n == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    offs = [dtype.fields[name][1] for name in fields]
    same_f4 = all(k.kind == "f" and k.itemsize == 4 and k.shape == () for k in kinds)
    adjacent = same_f4 and offs[1] == offs[0] + 4 and offs[2] == offs[0] + 8
    packed_rows = row_step == width * dtype.itemsize
    word_aligned = offs[0] % 4 == 0 and dtype.itemsize % 4 == 0
    if adjacent and packed_rows and (kinds[0].isnative or word_aligned):
        if kinds[0].isnative:
            private = buf.copy()
        else:
            # Every 4-byte word of the cloud cast from the other byte order to native
            # float32: x, y, z come out native (other fields are garbled, but only x, y, z
            # are viewed). numpy's vectorised cast swaps 4x faster than byteswap() and
            # far faster than a per-point gather.
            words = n * dtype.itemsize // 4
            private = np.frombuffer(buf, kinds[0], count=words).astype(np.float32)
            private = private.view(np.uint8)
        xyz = np.ndarray(
            (n, 3), dtype=np.float32, buffer=private, offset=offs[0], strides=(dtype.itemsize, 4)
        )
    elif adjacent:
        view = np.ndarray(
            (height, width, 3),
            dtype=kinds[0],
            buffer=buf,
            offset=offs[0],
            strides=(row_step, dtype.itemsize, 4),
        )
        xyz = np.array(view.reshape(n, 3), dtype=np.float32, order="C")
    else:
        points = cloud_to_structured(msg, limits)
        xyz = np.empty((n, 3), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 past float32: Inf
            for column, name in enumerate(fields):
                xyz[:, column] = points[name]
    if remove_nonfinite:
        # NaN and Inf propagate through a sum, so one pass over the row sums finds the
        # candidates; the exact per-coordinate test runs on those rows only (a sum of
        # huge finite values can overflow).
        with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf, huge + huge
            candidates = np.flatnonzero(~np.isfinite(xyz[:, 0] + xyz[:, 1] + xyz[:, 2]))
        if candidates.size:
            bad = candidates[~np.isfinite(xyz[candidates]).all(axis=1)]
            if bad.size:
                keep = np.ones(n, dtype=bool)
                keep[bad] = False
                index = np.flatnonzero(keep)
                return xyz[index], index
    return xyz, _identity_index(n)


_IDENTITY = np.zeros(0, dtype=np.int64)


def _identity_index(n: int) -> np.ndarray:
    """A read-only 0..n-1 index, sliced from a cached arange (no per-call allocation)."""
    global _IDENTITY
    if _IDENTITY.size < n:
        _IDENTITY = np.arange(max(n, 2 * _IDENTITY.size), dtype=np.int64)
        _IDENTITY.flags.writeable = False
    return _IDENTITY[:n]


def cloud_fields(
    msg: Any,
    names: Sequence[str],
    *,
    index: np.ndarray | None = None,
    dtype: Any = np.float32,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> dict[str, np.ndarray]:
    """Named fields as native arrays of ``dtype``, optionally gathered at ``index``."""
    points = cloud_to_structured(msg, limits)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in (points.dtype.names or ()):
            raise LayoutError(
                POINTCLOUD2, "fields", cloud_field_names(msg), f"no field named {name!r}"
            )
        column = points[name] if index is None else points[name][index]
        out[name] = np.asarray(column, dtype=dtype)
    return out


def structured_to_cloud(
    points: np.ndarray | Mapping[str, np.ndarray],
    *,
    factory: MessageFactory,
    stamp_ns: int,
    frame_id: str,
    big_endian: bool = False,
    point_step: int | None = None,
    height: int = 1,
    is_dense: bool | None = None,
) -> Any:
    """Build a PointCloud2 from a structured array or a mapping of name to column.

    Fields are packed in the given order; ``point_step`` larger than the packed size
    pads each point (as drivers aligning to 16 or 32 bytes do). ``height > 1`` makes an
    organised cloud of ``len / height`` columns.
    """
    if isinstance(points, np.ndarray) and points.dtype.names:
        columns = {name: points[name] for name in points.dtype.names}
    elif isinstance(points, Mapping):
        columns = {name: np.asarray(col) for name, col in points.items()}
    else:
        raise LayoutError(POINTCLOUD2, "points", type(points).__name__, "need named columns")
    if not columns:
        raise LayoutError(POINTCLOUD2, "fields", [], "a cloud needs at least one field")
    n = len(next(iter(columns.values())))
    order = ">" if big_endian else "<"
    names, formats, offsets, field_msgs = [], [], [], []
    offset = 0
    for name, col in columns.items():
        if len(col) != n:
            raise LayoutError(POINTCLOUD2, name, len(col), f"column length differs from {n}")
        base = col.dtype.base if col.ndim == 1 else col.dtype
        code = NUMPY_TO_DATATYPE.get((base.kind, base.itemsize))
        if code is None:
            raise EncodingError(POINTCLOUD2, name, str(base), "no PointField datatype for it")
        count = 1 if col.ndim == 1 else int(np.prod(col.shape[1:]))
        fmt = base.newbyteorder(order)
        names.append(name)
        formats.append(fmt if count == 1 else (fmt, (count,)))
        offsets.append(offset)
        field_msgs.append(
            factory.make(
                "sensor_msgs/msg/PointField", name=name, offset=offset, datatype=code, count=count
            )
        )
        offset += base.itemsize * count
    step = offset if point_step is None else int(point_step)
    if step < offset:
        raise LayoutError(POINTCLOUD2, "point_step", step, f"smaller than its fields ({offset})")
    if height <= 0 or n % height:
        raise LayoutError(POINTCLOUD2, "height", height, f"does not divide {n} points")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    packed = np.zeros(n, dtype=dtype)
    for name, col in columns.items():
        packed[name] = col.reshape(packed[name].shape)
    if is_dense is None:
        floats = [c for c in columns.values() if c.dtype.kind == "f"]
        is_dense = all(bool(np.isfinite(c).all()) for c in floats)
    width = n // height
    return factory.make(
        POINTCLOUD2,
        header=make_header(factory, stamp_ns, frame_id),
        height=height,
        width=width,
        fields=field_msgs,
        is_bigendian=bool(big_endian),
        point_step=step,
        row_step=step * width,
        data=packed.view(np.uint8).reshape(-1),
        is_dense=bool(is_dense),
    )


def xyz_to_cloud(
    xyz: np.ndarray,
    *,
    factory: MessageFactory,
    stamp_ns: int,
    frame_id: str,
    extra: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """Convenience: float32 x, y, z (+ extra columns) as an unorganised cloud."""
    xyz = np.asarray(xyz, dtype=np.float32)
    columns: dict[str, np.ndarray] = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    columns.update(extra or {})
    return structured_to_cloud(columns, factory=factory, stamp_ns=stamp_ns, frame_id=frame_id)
