"""Typed errors for malformed or unsupported ROS messages.

Every error names the message type, the field and the offending value, so a
diagnostic can say exactly what was wrong with an input without a traceback.
"""

from __future__ import annotations

from typing import Any


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MessageError(ValueError):
    """A message that cannot be converted; names message type, field and value."""

    reason = "invalid message"

    def __init__(self, msgtype: str, field: str, value: Any, detail: str) -> None:
        self.msgtype = msgtype
        self.field = field
        self.value = value
        self.detail = detail
        super().__init__(f"{msgtype}.{field}={_short(value)}: {detail}")


class EncodingError(MessageError):
    """An image encoding, compressed format or distortion model we do not handle."""

    reason = "unsupported_encoding"


class LayoutError(MessageError):
    """Sizes, steps, offsets or lengths that do not describe the data."""

    reason = "bad_layout"


class SizeLimitError(MessageError):
    """A declared size over the configured cap (checked before any allocation)."""

    reason = "over_size_limit"


class ValueRangeError(MessageError):
    """A numeric field out of range: NaN/Inf where a finite value is needed, bad stamp."""

    reason = "bad_value"
