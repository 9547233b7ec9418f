"""Header stamps as integer nanoseconds, and header construction.

The pipeline keeps time as ``int`` nanoseconds from the header stamp (never wall
time); these helpers convert to and from ``builtin_interfaces/Time``.
"""

from __future__ import annotations

from typing import Any

from .errors import ValueRangeError
from .factory import MessageFactory

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any, msgtype: str = "builtin_interfaces/msg/Time") -> int:
    """Convert a ``Time`` (``sec``, ``nanosec``) to nanoseconds, validating both fields."""
    sec = int(stamp.sec)
    nanosec = int(stamp.nanosec)
    if not 0 <= nanosec < NS_PER_S:
        raise ValueRangeError(msgtype, "stamp.nanosec", nanosec, "must lie in [0, 1e9)")
    return sec * NS_PER_S + nanosec


def header_stamp_ns(msg: Any, msgtype: str) -> int:
    return stamp_to_ns(msg.header.stamp, msgtype)


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return sec, nanosec


def make_time(factory: MessageFactory, stamp_ns: int) -> Any:
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return factory.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    return factory.make(
        "std_msgs/msg/Header", stamp=make_time(factory, stamp_ns), frame_id=str(frame_id)
    )
