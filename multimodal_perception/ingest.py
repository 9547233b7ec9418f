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
from collections import Counter, defaultdict, deque
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
    periods_ns: deque[int] = field(default_factory=lambda: deque(maxlen=20))  # recent gaps
    # The clock the diagnostics are stamped with (the node's ROS clock) at the newest
    # arrival; None: judged on header stamps (replay, where that clock is header time).
    last_arrival_ns: int | None = None

    def rate_hz(self) -> float | None:
        if self.stamped < 2 or self.first_stamp_ns is None or self.last_stamp_ns is None:
            return None
        span = (self.last_stamp_ns - self.first_stamp_ns) / 1e9
        return (self.stamped - 1) / span if span > 0 else None

    def observe(self, stamp_ns: int, jump_ns: int, newest_elsewhere: int | None) -> None:
        """A decoded message's header stamp, for the rate and the usual period. A stamp
        more than ``jump_ns`` behind the last (a bag loop, a clock reset) is named, as is
        one that far ahead of this topic and of every other topic's newest (a clock step;
        a stream resuming after a gap is not one); the rate starts again from it."""
        last = self.last_stamp_ns
        step = 0 if last is None else stamp_ns - last
        ahead = newest_elsewhere is None or stamp_ns - newest_elsewhere > jump_ns
        if step < -jump_ns or (step > jump_ns and ahead):
            kind = "time_jump_backward" if step < 0 else "time_jump_forward"
            self.notes[kind] += 1
            self.last_problem = (
                f"header.stamp {'went back' if step < 0 else 'jumped ahead'} "
                f"{abs(step) / 1e9:.3f} s (from {last} to {stamp_ns} ns): "
                + ("a bag loop or a clock reset" if step < 0 else "a clock step")
            )
            self.first_stamp_ns, self.stamped = None, 0
            self.periods_ns.clear()
        elif 0 < step <= jump_ns:
            self.periods_ns.append(step)
        if self.first_stamp_ns is None:
            self.first_stamp_ns = stamp_ns
        self.last_stamp_ns = stamp_ns
        self.stamped += 1

    def silent_s(self, now_ns: int) -> float | None:
        """Seconds since the last message (its arrival on the node's clock, else its
        header stamp) where that is more than three usual periods (of header stamps) and
        0.5 s; None while the stream is as usual, or too new to judge."""
        last = self.last_arrival_ns if self.last_arrival_ns is not None else self.last_stamp_ns
        if last is None or len(self.periods_ns) < 3:
            return None
        gap = now_ns - last
        period = float(np.median(self.periods_ns))
        return gap / 1e9 if gap > max(3 * period, 5e8) else None

    def recent_rate_hz(self) -> float | None:
        if len(self.periods_ns) < 3:
            return None
        return 1e9 / float(np.median(self.periods_ns))


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
        self.jump_ns = int(params["sync.time_jump_ms"] * 1e6)

    def resume(self) -> None:
        """Input starts again after a pause (a managed node re-activated): the streams'
        time is judged afresh, so the pause is neither a silence nor a clock step."""
        for stats in self.stats.values():
            stats.last_stamp_ns = stats.last_arrival_ns = stats.first_stamp_ns = None
            stats.stamped = 0
            stats.periods_ns.clear()

    def decode(self, topic: str, msg: Any, arrival_ns: int | None = None) -> Decoded | None:
        """None for a topic of no role (not counted) or a message dropped (counted); a
        TFMessage whose transforms were all refused is counted dropped but still returned
        (empty, with its ``rejected``), so the buffer can name them in lookups."""
        role = self.roles.get(topic)
        if role is None:
            return None
        stats = self.stats[topic]
        stats.received += 1
        stats.last_arrival_ns = arrival_ns if arrival_ns is not None else stats.last_arrival_ns
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
            others = [
                st.last_stamp_ns
                for t, st in self.stats.items()
                if t != topic and st.last_stamp_ns is not None
            ]
            stats.observe(stamp, self.jump_ns, max(others, default=None))
        return Decoded(topic, role, stamp, payload)

    def _drop(self, topic: str, reason: str, exc: Exception) -> None:
        self.stats[topic].outcomes[reason] += 1
        self.stats[topic].last_problem = f"{reason}: {exc}"
        log.warning("%s: dropped (%s): %s: %s", topic, reason, type(exc).__name__, exc)
        return None

    def note(self, topic: str, note: str, problem: str) -> None:
        """A problem about a topic found outside its messages (a publisher's QoS, say)."""
        self.stats[topic].notes[note] += 1
        self.stats[topic].last_problem = problem
        log.warning("%s: %s", topic, problem)

    def supersede(self, topic: str, stamp_ns: int) -> None:
        """A complete frame dropped for a newer one before compute was free (the node's
        latest-wins hand-over)."""
        self.count(topic, "used", -1)
        self.count(topic, "superseded_by_newer_frame")
        rate = self.stats[topic].recent_rate_hz()
        self.stats[topic].last_problem = (
            f"frame at {stamp_ns} ns superseded by a newer one: frames arrive faster than "
            "they are computed" + (f" (arriving at {rate:.1f} Hz)" if rate else "")
        )

    def silences(self, now_ns: int) -> dict[str, float]:
        """Sensor topics that went silent at ``now_ns``: seconds since their last message."""
        out = {}
        for topic, stats in self.stats.items():
            if self.roles.get(topic) in SENSOR_ROLES:
                silent = stats.silent_s(now_ns)
                if silent is not None:
                    out[topic] = silent
        return out

    def count(self, topic: str, outcome: str, delta: int = 1) -> None:
        """An outcome decided after decoding (``received`` unchanged)."""
        self.stats[topic].outcomes[outcome] += delta
