"""Shared pieces of the decoder fuzz tests: small caps, strategies, the decode oracle."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from conftest import roundtrip
from multimodal_perception.ros_pkg.errors import MessageError
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.limits import MessageLimits
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


SMALL = (np.mgrid[0:16, 0:24].sum(axis=0)[:, :, None] * [3, 5, 7] % 256).astype(np.uint8)


def encoded(ext: str, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    return cv2.imencode(ext, SMALL, params)[1].tobytes()


def compressed(data: bytes, fmt: str = "jpeg") -> Any:
    msg = F.make(
        "sensor_msgs/msg/CompressedImage",
        header=header(),
        format=fmt,
        data=np.frombuffer(data, np.uint8),
    )
    return roundtrip(TS, msg)
