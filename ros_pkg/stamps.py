"""Header stamps as integer nanoseconds, and header construction.

The pipeline keeps time as ``int`` nanoseconds from the header stamp (never wall
time); these helpers convert to and from ``builtin_interfaces/Time``.

Two readers: :func:`stamp_to_ns` converts any valid ``Time`` (builders, bag summaries,
output messages: a stamp of 0 is legitimate there), while :func:`checked_stamp_ns` and
:func:`header_stamp_ns` are the decode path of *input* messages and also refuse a stamp
before 1970 (negative ``sec``) and an unset stamp (0), which would break the bag writer
and the tracker downstream.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ValueRangeError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits

NS_PER_S = 1_000_000_000


def _stamp_fields(stamp: Any, msgtype: str, field: str) -> tuple[int, int]:
    values = []
    for name in ("sec", "nanosec"):
        raw = getattr(stamp, name, None)
        try:
            value = int(raw)  # type: ignore[arg-type]
            if value != raw:
                raise ValueError("not an integer")
        except (TypeError, ValueError, OverflowError):
            raise ValueRangeError(msgtype, f"{field}.{name}", raw, "not an integer") from None
        values.append(value)
    sec, nanosec = values
    if not 0 <= nanosec < NS_PER_S:
        raise ValueRangeError(msgtype, f"{field}.nanosec", nanosec, "must lie in [0, 1e9)")
    return sec, nanosec


def stamp_to_ns(stamp: Any, msgtype: str = "builtin_interfaces/msg/Time") -> int:
    """Convert a ``Time`` (``sec``, ``nanosec``) to nanoseconds, validating ``nanosec``."""
    sec, nanosec = _stamp_fields(stamp, msgtype, "stamp")
    return sec * NS_PER_S + nanosec


def checked_stamp_ns(
    stamp: Any,
    msgtype: str,
    field: str = "header.stamp",
    *,
    allow_zero: bool = False,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> int:
    """An input message's stamp in nanoseconds; refuses what no sensor can have stamped.

    Raises :class:`ValueRangeError` naming ``<field>.sec`` for a negative ``sec`` (before
    1970), ``sec`` past ``limits.max_stamp_sec``, and, unless ``allow_zero`` (tf_static
    publishers commonly leave static transforms at 0), the unset stamp 0.
    """
    sec, nanosec = _stamp_fields(stamp, msgtype, field)
    if sec < 0:
        raise ValueRangeError(msgtype, f"{field}.sec", sec, "before 1970 (negative seconds)")
    if sec > limits.max_stamp_sec:
        raise ValueRangeError(
            msgtype, f"{field}.sec", sec, f"past the largest Time.sec {limits.max_stamp_sec}"
        )
    if sec == 0 and nanosec == 0 and not allow_zero:
        raise ValueRangeError(msgtype, f"{field}.sec", sec, "unset stamp (0)")
    return sec * NS_PER_S + nanosec


def header_stamp_ns(msg: Any, msgtype: str, limits: MessageLimits = DEFAULT_LIMITS) -> int:
    """The checked header stamp of an input message (see :func:`checked_stamp_ns`)."""
    header = getattr(msg, "header", None)
    if header is None:
        raise ValueRangeError(msgtype, "header", None, "message has no header")
    return checked_stamp_ns(header.stamp, msgtype, "header.stamp", limits=limits)


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


def shift_stamps(msg: Any, delta_ns: int) -> Any:
    """A rosbags message with its header stamp (or, for a TFMessage, every transform's)
    moved by ``delta_ns``: a recording looped into a continuous one."""

    def moved(header: Any) -> Any:
        ns = header.stamp.sec * NS_PER_S + header.stamp.nanosec + delta_ns
        stamp = dataclasses.replace(header.stamp, sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)
        return dataclasses.replace(header, stamp=stamp)

    if hasattr(msg, "header"):
        return dataclasses.replace(msg, header=moved(msg.header))
    if hasattr(msg, "transforms"):
        transforms = [dataclasses.replace(t, header=moved(t.header)) for t in msg.transforms]
        return dataclasses.replace(msg, transforms=transforms)
    return msg
