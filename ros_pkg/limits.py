"""Caps on declared message sizes, checked before anything is allocated.

A corrupt or hostile message can declare a 100000 x 100000 image or a billion
points; conversions compare the declared size against these caps first and raise
:class:`~multimodal_perception.ros_pkg.errors.SizeLimitError` instead of allocating.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class MessageLimits:
    max_image_side: int = 16384
    max_image_bytes: int = 512 * MIB
    max_compressed_bytes: int = 64 * MIB
    max_cloud_points: int = 8_000_000
    max_cloud_bytes: int = 1024 * MIB
    max_radar_returns: int = 200_000
    max_transforms: int = 10_000


DEFAULT_LIMITS = MessageLimits()
