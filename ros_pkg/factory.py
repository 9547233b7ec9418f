"""Message construction for either rosbags or rclpy (rosidl) message classes.

Builders in this package call ``factory.make("pkg/msg/Type", **fields)`` and never
name a concrete class, so one builder serves the rclpy node and the bag writer.
Primitive arrays are passed as numpy arrays; each factory adapts them to what its
message classes accept.
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Protocol

import numpy as np


class MessageFactory(Protocol):
    def make(self, msgtype: str, **fields: Any) -> Any: ...


class RosbagsFactory:
    """Builds ``rosbags`` dataclass messages from a typestore (every field must be given)."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def make(self, msgtype: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[msgtype]
        except KeyError:
            raise KeyError(f"message type {msgtype!r} is not registered in the typestore") from None
        return cls(**fields)


# rosidl Python setters accept array.array for sequence<primitive> fields and numpy
# arrays for fixed-size arrays; these typecodes match the sequence element types.
_ARRAY_TYPECODES = {
    "uint8": "B",
    "octet": "B",
    "int8": "b",
    "uint16": "H",
    "int16": "h",
    "uint32": "I",
    "int32": "i",
    "uint64": "Q",
    "int64": "q",
    "float": "f",
    "double": "d",
}


class RclpyFactory:
    """Builds rosidl-generated messages (``sensor_msgs.msg.Image`` ...) by type name.

    Imports only the message packages, not rclpy, so it also serves tools that have
    a ROS install but no running node.
    """

    def __init__(self) -> None:
        self._classes: dict[str, Any] = {}

    def _class(self, msgtype: str) -> Any:
        cls = self._classes.get(msgtype)
        if cls is None:
            package, _, name = msgtype.split("/")
            cls = getattr(importlib.import_module(f"{package}.msg"), name)
            self._classes[msgtype] = cls
        return cls

    def make(self, msgtype: str, **fields: Any) -> Any:
        cls = self._class(msgtype)
        field_types: dict[str, str] = cls.get_fields_and_field_types()
        adapted: dict[str, Any] = {}
        for name, value in fields.items():
            field_type = field_types.get(name)
            if field_type is None:
                # Builders fill the Jazzy superset (e.g. Marker.mesh_file); an older
                # distro's class lacks some of those fields and takes no value for them.
                continue
            if field_type in ("byte", "octet") and isinstance(value, int):
                value = bytes([value])
            elif isinstance(value, np.ndarray | bytes | bytearray | memoryview):
                value = _adapt_array(field_type, value)
            adapted[name] = value
        return cls(**adapted)


def _adapt_array(field_type: str, value: Any) -> Any:
    if field_type.startswith("sequence<"):
        element = field_type[len("sequence<") :].split(",")[0].rstrip(">")
        code = _ARRAY_TYPECODES.get(element)
        if code is not None:
            out = array.array(code)
            out.frombytes(np.ascontiguousarray(value, dtype=code).tobytes())
            return out
    return np.asarray(value)
