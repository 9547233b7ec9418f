"""The ROS 2 environment that `make ros-env` (scripts/install-ros.sh) puts in the venv.

vision_msgs, radar_msgs and tf2_msgs are built there from the project's own .msg files (the
ones the rosbags typestore registers); these tests fail when the built rosidl classes drift
from those files or from the typestore. Under CI (CI=true) a missing rclpy is a failure, since
`make test` runs `make ros-env` first; elsewhere the tests skip.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from rosbags.typesys import get_types_from_msg

REPO = Path(__file__).resolve().parents[1]
MSG_DIRS = {
    "vision_msgs": REPO / "ros_pkg" / "msg" / "vision_msgs",
    "radar_msgs": REPO / "ros_pkg" / "msg" / "radar_msgs",
    "tf2_msgs": REPO / "scripts" / "ros_msgs" / "tf2_msgs",
}
# rosidl's names for the .msg base types (get_fields_and_field_types()).
ROSIDL_BASE = {
    "float32": "float",
    "float64": "double",
    "bool": "boolean",
    "byte": "octet",
    "char": "uint8",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if _in_ci():
            pytest.fail(
                f"{module} is not importable under CI ({exc}): `make ros-env` "
                "(scripts/install-ros.sh) should have installed ROS 2 Jazzy into the venv"
            )
        pytest.skip(f"{module} is not importable ({exc}); run `make ros-env` to install ROS 2")


def _shipped() -> dict[str, tuple[list, list]]:
    """``pkg/msg/Name`` -> (constants, fields), parsed from the project's .msg files."""
    out: dict[str, tuple[list, list]] = {}
    for pkg, folder in MSG_DIRS.items():
        paths = sorted(folder.glob("*.msg"))
        assert paths, folder
        for path in paths:
            out.update(get_types_from_msg(path.read_text(), f"{pkg}/msg/{path.stem}"))
    return out


def _rosidl_type(node) -> str:
    """A rosbags field type in rosidl's spelling: 'double', 'sequence<pkg/Name>', 'float[6]'..."""
    kind, arg = node
    kind = int(kind)
    if kind == 1:  # base type (name, string bound)
        name, bound = arg
        name = ROSIDL_BASE.get(name, name)
        return f"{name}<{bound}>" if bound else name
    if kind == 2:  # message type
        pkg, _, name = arg.split("/")
        return f"{pkg}/{name}"
    sub, count = arg
    if kind == 3:  # fixed-size array
        return f"{_rosidl_type(sub)}[{count}]"
    assert kind == 4, node  # sequence, bounded when count > 0
    return f"sequence<{_rosidl_type(sub)}{f', {count}' if count else ''}>"


def _rosidl_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(_need(f"{pkg}.msg"), name)


def test_ros_env_imports():
    rclpy = _need("rclpy")
    for module in ("sensor_msgs.msg", "diagnostic_msgs.msg", "visualization_msgs.msg"):
        _need(module)
    for pkg in MSG_DIRS:
        _need(f"{pkg}.msg")
    # rclpy's C extension loads (and finds its libraries) with nothing sourced.
    assert rclpy.ok() is False


def test_built_packages_match_msg_files():
    _need("rclpy")
    shipped = _shipped()
    for msgtype, (consts, fields) in shipped.items():
        cls = _rosidl_class(msgtype)
        expected = {name: _rosidl_type(node) for name, node in fields}
        assert cls.get_fields_and_field_types() == expected, msgtype
        assert list(cls.get_fields_and_field_types()) == [name for name, _ in fields], msgtype
        for name, _typ, value in consts:
            assert getattr(cls, name) == value, f"{msgtype}.{name}"


def test_tf2_msgs_file_matches_typestore(typestore):
    """scripts/ros_msgs/tf2_msgs is a copy of a type the rosbags Jazzy store already has."""
    shipped = _shipped()["tf2_msgs/msg/TFMessage"]
    assert typestore.fielddefs["tf2_msgs/msg/TFMessage"] == shipped


def test_built_packages_share_cdr_with_typestore(typestore):
    """Every built type's CDR goes rclpy -> typestore -> rclpy unchanged (same length; the
    padding bytes may differ: Fast CDR leaves them unset)."""
    serialization = _need("rclpy.serialization")
    for msgtype in _shipped():
        cls = _rosidl_class(msgtype)
        raw = bytes(serialization.serialize_message(cls()))
        back = bytes(typestore.serialize_cdr(typestore.deserialize_cdr(raw, msgtype), msgtype))
        assert len(back) == len(raw), msgtype
        assert serialization.deserialize_message(back, cls) == cls(), msgtype

    vision = _need("vision_msgs.msg")
    det = vision.Detection2D(id="car-1")
    det.bbox.center.position.x = 12.5
    det.bbox.size_y = 3.0
    hyp = vision.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = "car"
    hyp.hypothesis.score = 0.75
    det.results.append(hyp)
    arr = vision.Detection2DArray(detections=[det])
    arr.header.frame_id = "camera"
    raw = bytes(serialization.serialize_message(arr))
    got = typestore.deserialize_cdr(raw, "vision_msgs/msg/Detection2DArray")
    assert got.header.frame_id == "camera"
    (d,) = got.detections
    assert (d.id, d.bbox.center.position.x, d.bbox.size_y) == ("car-1", 12.5, 3.0)
    assert (d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) == ("car", 0.75)
    back = bytes(typestore.serialize_cdr(got, "vision_msgs/msg/Detection2DArray"))
    assert serialization.deserialize_message(back, vision.Detection2DArray) == arr
