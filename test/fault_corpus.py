"""A corpus of damaged recordings, generated at test time from the shipped bag.

Each fault kind is a function of the clean records (the shipped bag's first seconds) that
returns the damaged records to write, or of the written bag folder (file-level damage).
``expect`` says what must become of it besides the common rules (no crash, every input
message accounted for): the topic and drop reason it must be counted under, or damage
the replay must report. ``make faults`` prints the resulting table.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multimodal_perception.ros_pkg.bag_io import BagRecord, BagWriter
from multimodal_perception.ros_pkg.typestore import get_project_typestore

CAMERA = "/camera/image_raw/compressed"
RAW = "/camera/image_raw"
INFO = "/camera/camera_info"
LIDAR = "/lidar/points"
RADAR = "/radar/points"
TYPES = get_project_typestore().types
Records = list[BagRecord]


@dataclass(frozen=True)
class Fault:
    kind: str
    records: Callable[[Records], Records] | None = None  # message-level damage
    expect: dict[str, str] = field(default_factory=dict)  # topic -> drop reason counted
    files: Callable[[Path], None] | None = None  # damage to the written bag folder
    damage: bool = False  # the replay must report damage
    resets: bool = False  # header time goes backwards: the pipeline must reset
    notes: dict[str, str] = field(default_factory=dict)  # topic -> repair counted (still used)
    compress: bool = True
    degraded: str = ""  # a reason frames must be degraded for, the report naming the problem
    names: str = ""  # ...with these words in the report's last degraded problem


def _replace(msg: Any, **changes: Any) -> Any:
    return dataclasses.replace(msg, **changes)


def _stamp(msg: Any, sec: int, nanosec: int = 0) -> Any:
    header = _replace(msg.header, stamp=_replace(msg.header.stamp, sec=sec, nanosec=nanosec))
    return _replace(msg, header=header)


def _nth(records: Records, topic: str, n: int, fn: Callable[[Any], Any]) -> Records:
    """Records with the n-th message of ``topic`` replaced by ``fn(msg)``."""
    out, seen = [], 0
    for r in records:
        if r.topic == topic:
            if seen == n:
                r = dataclasses.replace(r, msg=fn(r.msg))
            seen += 1
        out.append(r)
    return out


def _cloud_data(msg: Any, fn: Callable[[np.ndarray], None]) -> Any:
    data = np.array(msg.data, dtype=np.uint8).copy()
    fn(data.view(np.float32).reshape(msg.width * msg.height, msg.point_step // 4))
    return _replace(msg, data=data)


def _jpeg_declaring(width: int, height: int, app_bytes: int) -> bytes:
    """A JPEG header whose SOF0 (after ``app_bytes`` of APP1 segments, each at most 64 KiB)
    declares width x height."""
    app = b""
    while app_bytes > 0:
        n = min(app_bytes, 65000)
        app += b"\xff\xe1" + struct.pack(">H", 2 + n) + bytes(n)
        app_bytes -= n
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return b"\xff\xd8" + app + sof + b"\xff\xd9"


def _png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def _compressed(data: bytes, fmt: str = "jpeg") -> Callable[[Any], Any]:
    return lambda m: _replace(m, format=fmt, data=np.frombuffer(data, np.uint8))


def _raw_image(msg: Any, **fields: Any) -> Any:
    values = dict(
        header=msg.header, height=4, width=4, encoding="bgr8", is_bigendian=0, step=12,
        data=np.zeros(48, np.uint8),
    )  # fmt: skip
    values.update(fields)
    return TYPES["sensor_msgs/msg/Image"](**values)


def _with_raw_copies(records: Records) -> Records:
    """The camera published both compressed and raw (decoded) images."""
    import cv2

    out = []
    for r in records:
        out.append(r)
        if r.topic == CAMERA:
            bgr = cv2.imdecode(np.asarray(r.msg.data, np.uint8), cv2.IMREAD_COLOR)
            h, w = bgr.shape[:2]
            raw = _raw_image(r.msg, height=h, width=w, step=3 * w, data=bgr.reshape(-1))
            out.append(BagRecord(RAW, "sensor_msgs/msg/Image", r.log_time_ns, raw))
    return out


def _extra(records: Records, topic: str, msgtype: str, after: int, msg_of: Callable) -> Records:
    """One extra message on ``topic`` after the ``after``-th camera frame."""
    out, cams = [], 0
    for r in records:
        out.append(r)
        if r.topic == CAMERA:
            cams += 1
            if cams == after:
                out.append(BagRecord(topic, msgtype, r.log_time_ns, msg_of(r.msg)))
    return out


def _shift_after(records: Records, t_ns: int, delta_s: int) -> Records:
    """Header stamps of every message logged after ``t_ns`` moved by ``delta_s`` (the
    sensors' clock jumped; the recorder's did not)."""
    out = []
    for r in records:
        if r.log_time_ns > t_ns:
            msg = r.msg
            if hasattr(msg, "header"):
                stamp = msg.header.stamp
                msg = _stamp(msg, stamp.sec + delta_s, stamp.nanosec)
            elif hasattr(msg, "transforms"):
                moved = [
                    _replace(t, header=_replace(t.header, stamp=_replace(
                        t.header.stamp, sec=t.header.stamp.sec + delta_s)))
                    for t in msg.transforms
                ]  # fmt: skip
                msg = _replace(msg, transforms=moved)
            r = dataclasses.replace(r, msg=msg)  # the recorder's clock went on
        out.append(r)
    return out


def _tf_value(value: str, index: int = 0) -> Callable[[Any], Any]:
    def change(msg: Any) -> Any:
        t = msg.transforms[index]
        if value == "nan":
            tr = _replace(t.transform.translation, x=float("nan"))
            t = _replace(t, transform=_replace(t.transform, translation=tr))
        else:
            q = _replace(t.transform.rotation, x=0.0, y=0.0, z=0.0, w=0.0)
            t = _replace(t, transform=_replace(t.transform, rotation=q))
        return _replace(msg, transforms=[*msg.transforms[:index], t, *msg.transforms[index + 1 :]])

    return change


def _all_tf_nan(msg: Any) -> Any:
    for i in range(len(msg.transforms)):
        msg = _tf_value("nan", i)(msg)
    return msg


def _truncate(folder: Path) -> None:
    mcap = next(folder.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * 0.6)])


def _corrupt_chunk(folder: Path, inner: bool) -> None:
    """Damage the middle chunk: the first inner record's length (uncompressed) or the
    compressed bytes themselves."""
    from mcap.reader import make_reader

    mcap = next(folder.glob("*.mcap"))
    with open(mcap, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    chunk = chunks[len(chunks) // 2]
    data = bytearray(mcap.read_bytes())
    off = chunk.chunk_start_offset + 1 + 8 + 8 + 8 + 8 + 4
    off += 4 + int.from_bytes(data[off : off + 4], "little") + 8  # compression name, length
    if inner:
        data[off + 1 : off + 9] = (2**40).to_bytes(8, "little")
    else:
        data[off : off + 64] = bytes(64)
    mcap.write_bytes(bytes(data))


def _radar_v(value: float, every: int = 1) -> Callable[[Any], Any]:
    def set_v(cols: np.ndarray) -> None:
        cols[::every, 4] = value
        cols[::every, 5] = value

    return lambda m: _cloud_data(m, set_v)


def _duplicate_camera(records: Records) -> Records:
    return [x for r in records for x in ([r, r] if r.topic == CAMERA else [r])]


def _half_width_info(records: Records) -> Records:
    return [
        dataclasses.replace(r, msg=_replace(r.msg, width=r.msg.width // 2)) if r.topic == INFO
        else r for r in records
    ]  # fmt: skip


def _string_on_lidar(records: Records) -> Records:
    text = TYPES["std_msgs/msg/String"](data="not a cloud")
    return [
        dataclasses.replace(r, msgtype="std_msgs/msg/String", msg=text) if r.topic == LIDAR
        else r for r in records
    ]  # fmt: skip


def _lidar_stops(records: Records) -> Records:
    half = records[len(records) // 2].log_time_ns
    return [r for r in records if not (r.topic == LIDAR and r.log_time_ns > half)]


def _without(topic: str) -> Callable[[Records], Records]:
    return lambda records: [r for r in records if r.topic != topic]


def _bad_raw(**fields: Any) -> Callable[[Records], Records]:
    return lambda r: _extra(r, RAW, "sensor_msgs/msg/Image", 3, lambda m: _raw_image(m, **fields))


def _lidar(fn: Callable[[Any], Any]) -> Callable[[Records], Records]:
    return lambda r: _nth(r, LIDAR, 2, fn)


def _camera(fn: Callable[[Any], Any]) -> Callable[[Records], Records]:
    return lambda r: _nth(r, CAMERA, 3, fn)


def _info(fn: Callable[[Any], Any]) -> Callable[[Records], Records]:
    return lambda r: _nth(r, INFO, 2, fn)


def _points(column: int, value: float, rows: slice = slice(0, 100)) -> Callable[[Any], Any]:
    return lambda m: _cloud_data(m, lambda c: c.__setitem__((rows, column), value))


def _mid_shift(delta_s: int) -> Callable[[Records], Records]:
    return lambda r: _shift_after(r, r[len(r) // 2].log_time_ns, delta_s)


def _cut(fraction: float) -> Callable[[Any], Any]:
    return lambda m: _replace(m, data=np.array(m.data[: int(len(m.data) * fraction)]))


ZERO = np.zeros(0, np.uint8)
HUGE_JPEG = _jpeg_declaring(60000, 60000, 70_000)
FAULTS: list[Fault] = [
    Fault("negative_stamp", _camera(lambda m: _stamp(m, -5)), {CAMERA: "bad_value"}),
    Fault("zero_stamp", _camera(lambda m: _stamp(m, 0)), {CAMERA: "bad_value"}),
    Fault("nanosec_out_of_range", _lidar(lambda m: _stamp(m, m.header.stamp.sec, 2 * 10**9)),
          {LIDAR: "bad_value"}),
    Fault("duplicate_stamps", _duplicate_camera, {CAMERA: "superseded"}),
    Fault("out_of_order_lidar", lambda r: _swap_lidar(r)),
    Fault("clock_jump_back", _mid_shift(-5), resets=True),
    Fault("clock_jump_forward", _mid_shift(5)),
    Fault("nan_in_cloud", _lidar(_points(0, np.nan)), notes={LIDAR: "nonfinite_points_removed"}),
    Fault("inf_in_cloud", _lidar(_points(2, np.inf))),
    Fault("empty_cloud", _lidar(lambda m: _replace(m, width=0, row_step=0, data=ZERO))),
    Fault("truncated_cloud", _lidar(_cut(0.5)), {LIDAR: "bad_layout"}),
    Fault("cloud_row_step_lie", _lidar(lambda m: _replace(m, row_step=m.row_step * 4)),
          {LIDAR: "bad_layout"}),
    Fault("nan_camera_info", _info(lambda m: _replace(m, k=np.r_[np.nan, m.k[1:]])),
          {INFO: "bad_value"}),
    Fault("zero_focal_camera_info", _info(lambda m: _replace(m, k=np.r_[0.0, m.k[1:]])),
          {INFO: "bad_value"}),
    Fault("camera_info_size_mismatch", _half_width_info),
    Fault("nonfinite_tf", lambda r: _nth(r, "/tf", 10, _tf_value("nan"))),
    Fault("zero_quaternion_tf", lambda r: _nth(r, "/tf", 10, _tf_value("zero"))),
    Fault("nonfinite_tf_static_lidar", lambda r: _nth(r, "/tf_static", 0, _tf_value("nan", 1)),
          notes={"/tf_static": "bad_transforms_removed"},
          degraded="no_tf_lidar:rejected_transform",
          names="lidar was refused: tf2_msgs/msg/TFMessage.transforms[1].transform.translation.x"),
    Fault("all_tf_static_bad", lambda r: _nth(r, "/tf_static", 0, _all_tf_nan),
          {"/tf_static": "bad_value"}, degraded="no_tf_camera:rejected_transform",
          names="was refused: tf2_msgs/msg/TFMessage.transforms["),
    Fault("unknown_encoding", _bad_raw(encoding="bogus8"), {RAW: "unsupported_encoding"}),
    Fault("zero_width_image", _bad_raw(width=0, step=0, data=ZERO), {RAW: "bad_layout"}),
    Fault("garbage_jpeg", _camera(_compressed(bytes(range(256)) * 8))),
    Fault("truncated_jpeg", _camera(_cut(1 / 3))),
    Fault("huge_jpeg_after_app_segment", _camera(_compressed(HUGE_JPEG)),
          {CAMERA: "over_size_limit"}),
    Fault("huge_png", _camera(_compressed(_png_declaring(60000, 60000), "png")),
          {CAMERA: "over_size_limit"}),
    Fault("wrong_type_on_topic", _string_on_lidar, {LIDAR: "undecodable"}),
    Fault("absurd_radar_velocity", lambda r: _nth(r, RADAR, 3, _radar_v(1e8))),
    Fault("some_radar_returns_absurd", lambda r: _nth(r, RADAR, 3, _radar_v(-3e7, every=2)),
          notes={RADAR: "implausible_radar_returns_removed"}),
    Fault("camera_info_stamp_zero", _info(lambda m: _stamp(m, 0))),
    Fault("radar_nan_points", lambda r: _nth(r, RADAR, 3, _points(0, np.nan, slice(None)))),
    Fault("lidar_stops_mid_bag", _lidar_stops),
    Fault("no_camera_info", _without(INFO)),
    Fault("no_tf_static", _without("/tf_static")),
    Fault("wrong_lidar_frame_id", _lidar(lambda m: _replace(
        m, header=_replace(m.header, frame_id="nowhere")))),
    Fault("raw_and_compressed_camera", _with_raw_copies),
    Fault("truncated_mcap", files=_truncate, damage=True),
    Fault("corrupt_chunk_uncompressed", files=lambda f: _corrupt_chunk(f, True), damage=True,
          compress=False),
    Fault("corrupt_zstd_chunk", files=lambda f: _corrupt_chunk(f, False), damage=True),
    Fault("missing_metadata", files=lambda f: (f / "metadata.yaml").unlink(), damage=True),
    Fault("garbage_metadata", files=lambda f: (f / "metadata.yaml").write_text(": [ {"),
          damage=True),
]  # fmt: skip


def _swap_lidar(records: Records) -> Records:
    """Lidar sweeps 3 and 4 arrive in each other's place (stamps out of order)."""
    idx = [i for i, r in enumerate(records) if r.topic == LIDAR][3:5]
    out = list(records)
    a, b = idx
    out[a], out[b] = (
        dataclasses.replace(records[b], log_time_ns=records[a].log_time_ns),
        dataclasses.replace(records[a], log_time_ns=records[b].log_time_ns),
    )
    return out


def write_bag(records: Records, folder: Path, compress: bool = True) -> Path:
    with BagWriter(folder, compress=compress) as writer:
        for r in records:
            writer.write(r.topic, r.msg, r.log_time_ns)
    return folder
