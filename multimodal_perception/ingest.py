"""Ingest: input messages -> decoded numpy payloads, with per-topic accounting.

Owns the topic -> role map (camera, camera_info, lidar, radar, tf, tf_static) and the
count of every message received per topic: used, or dropped with a reason. Decoding a
message never raises: a message that cannot be decoded is counted with its reason
(the typed ``MessageError`` reason, ``bad_<role>`` for values out of range, or
``undecodable`` for anything else, such as a message of the wrong type) and logged with
the topic and the error.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Parameters
from .fusion.transforms import TransformError
from .rig import rig_cameras
from .ros_pkg.camera_info import CameraModel, camera_info_to_model
from .ros_pkg.errors import MessageError
from .ros_pkg.image import compressed_to_bgr8, image_to_bgr8
from .ros_pkg.pointcloud import cloud_to_xyz
from .ros_pkg.radar import (
    RadarPoints,
    radar_cloud_to_points,
    radar_scan_to_points,
    radar_tracks_to_points,
)
from .ros_pkg.stamps import checked_stamp_ns, header_stamp_ns
from .ros_pkg.tf_msgs import tf_message_to_transforms

log = logging.getLogger("multimodal_perception.ingest")

SENSOR_ROLES = ("camera", "lidar", "radar")


@dataclass(frozen=True)
class CameraImage:
    bgr: np.ndarray  # (H, W, 3) uint8
    frame_id: str


@dataclass(frozen=True)
class LidarCloud:
    xyz: np.ndarray  # (N, 3) float32, finite
    frame_id: str


@dataclass(frozen=True)
class Decoded:
    """One decoded input: a sensor sample (camera, lidar, radar) with its header stamp,
    a calibration (camera_info) or transforms (tf, tf_static; ``stamp_ns`` None)."""

    topic: str
    role: str
    stamp_ns: int | None
    payload: Any  # CameraImage | LidarCloud | RadarPoints | CameraModel | list of transforms


@dataclass
class TopicStats:
    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)  # repairs to messages still used
    last_problem: str = ""  # the newest drop or repair, naming field and value
    first_stamp_ns: int | None = None  # header stamps of decoded messages, for the rate
    last_stamp_ns: int | None = None
    stamped: int = 0

    def rate_hz(self) -> float | None:
        if self.stamped < 2 or self.first_stamp_ns is None or self.last_stamp_ns is None:
            return None
        span = (self.last_stamp_ns - self.first_stamp_ns) / 1e9
        return (self.stamped - 1) / span if span > 0 else None


def topic_roles(p: Parameters) -> dict[str, str]:
    """Input topic -> role; every camera of a rig (``cameras.names``) has its own three."""
    cameras = {}
    for cam in rig_cameras(p):
        cameras.update(
            {
                cam.image_topic: "camera",
                cam.compressed_topic: "camera",
                cam.info_topic: "camera_info",
            }
        )
    return {
        **cameras,
        p["topics.lidar"]: "lidar",
        p["topics.radar"]: "radar",
        p["topics.tf"]: "tf",
        p["topics.tf_static"]: "tf_static",
    }


def _radar_payload(msg: Any) -> RadarPoints:
    if hasattr(msg, "returns"):
        return radar_scan_to_points(msg)
    if hasattr(msg, "tracks"):  # points at the tracks' centroids, radial part of velocity
        return radar_tracks_to_points(msg)
    if hasattr(msg, "fields"):
        return radar_cloud_to_points(msg)
    msgtype = getattr(msg, "__msgtype__", "") or type(msg).__name__
    raise ValueError(f"radar message of type {msgtype} is not supported")


def decode_payload(role: str, msg: Any, stats: TopicStats | None = None) -> Any:
    """The numpy payload of one message of a role (raises the decoders' errors)."""
    if role in ("tf", "tf_static"):  # all bad: still delivered, so lookups can name them
        return tf_message_to_transforms(msg, raise_if_all_bad=False)
    if role == "camera_info":
        return camera_info_to_model(msg)
    if role == "camera":
        bgr = compressed_to_bgr8(msg) if hasattr(msg, "format") else image_to_bgr8(msg)
        return CameraImage(bgr, str(msg.header.frame_id))
    if role == "lidar":
        xyz, _ = cloud_to_xyz(msg)
        total = int(msg.width) * int(msg.height)
        if stats is not None and xyz.shape[0] < total:
            removed = total - xyz.shape[0]
            stats.notes["nonfinite_points_removed"] += removed
            stats.last_problem = (
                f"sensor_msgs/msg/PointCloud2.data: {removed} of {total} points have a "
                "NaN or Inf x/y/z (removed)"
            )
        return LidarCloud(xyz, str(msg.header.frame_id))
    return _radar_payload(msg)


class Ingest:
    def __init__(self, params: Parameters) -> None:
        self.roles = topic_roles(params)
        self.stats: dict[str, TopicStats] = defaultdict(TopicStats)

    def decode(self, topic: str, msg: Any) -> Decoded | None:
        """None for a topic of no role (not counted) or a message dropped (counted); a
        TFMessage whose transforms were all refused is counted dropped but still returned
        (empty, with its ``rejected``), so the buffer can name them in lookups."""
        role = self.roles.get(topic)
        if role is None:
            return None
        stats = self.stats[topic]
        stats.received += 1
        msgtype = getattr(msg, "__msgtype__", "") or type(msg).__name__
        try:
            payload = decode_payload(role, msg, stats)
            stamp = None
            if role == "camera_info":  # state, not a sample: static publishers stamp 0
                checked_stamp_ns(msg.header.stamp, msgtype, allow_zero=True)
            elif role not in ("tf", "tf_static"):
                stamp = header_stamp_ns(msg, msgtype)
            removed = getattr(payload, "removed", 0)
            if role in ("tf", "tf_static") and removed and not payload:
                self._drop(topic, payload.problems[0].reason, payload.problems[0])
                return Decoded(topic, role, None, payload)  # nothing used; the refusals told
            if removed:  # implausible radar returns, bad transforms: removed, counted
                stats.notes[payload.removed_reason] += removed
                stats.last_problem = payload.removed_detail
            if isinstance(payload, CameraModel | list):
                stats.outcomes["used"] += 1  # state: used as soon as it is applied
        except MessageError as exc:
            return self._drop(topic, exc.reason, exc)
        except (ValueError, TransformError) as exc:
            return self._drop(topic, f"bad_{role}", exc)
        except Exception as exc:  # a message of the wrong type, a decoder bug: never fatal
            return self._drop(topic, "undecodable", exc)
        if stamp is not None:
            if stats.first_stamp_ns is None:
                stats.first_stamp_ns = stamp
            stats.last_stamp_ns = stamp
            stats.stamped += 1
        return Decoded(topic, role, stamp, payload)

    def _drop(self, topic: str, reason: str, exc: Exception) -> None:
        self.stats[topic].outcomes[reason] += 1
        self.stats[topic].last_problem = f"{reason}: {exc}"
        log.warning("%s: dropped (%s): %s: %s", topic, reason, type(exc).__name__, exc)
        return None

    def count(self, topic: str, outcome: str, delta: int = 1) -> None:
        """An outcome decided after decoding (``received`` unchanged)."""
        self.stats[topic].outcomes[outcome] += delta
