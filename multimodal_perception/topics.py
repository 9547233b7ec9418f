"""Matching the configured input topics to what a recording holds.

A bag whose topic names differ from the configuration used to replay to "0 frames" with
no word. ``resolve_topics`` says plainly what is wrong (the bag's sensor topics, by type)
or, with ``auto``, picks the topics by message type where that is unambiguous and says
what it chose.
"""

from __future__ import annotations

from typing import Any

from .rig import rig_cameras

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
CLOUD = "sensor_msgs/msg/PointCloud2"
RADAR_TYPES = ("radar_msgs/msg/RadarScan", "radar_msgs/msg/RadarTracks")
SENSOR_TYPES = (IMAGE, COMPRESSED, CAMERA_INFO, CLOUD, *RADAR_TYPES)


class TopicError(ValueError):
    """The recording has none of the configured camera topics."""


def _by_type(topic_types: dict[str, str]) -> str:
    rows = [f"{t} ({k})" for t, k in sorted(topic_types.items()) if k in SENSOR_TYPES]
    return ", ".join(rows) or "none"


def _pick(candidates: list[str], hint: str) -> str | None:
    """The one candidate, or the one whose name contains ``hint``; None if ambiguous."""
    if len(candidates) == 1:
        return candidates[0]
    named = [t for t in candidates if hint in t.lower()]
    return named[0] if len(named) == 1 else None


def auto_topics(topic_types: dict[str, str]) -> dict[str, str]:
    """Parameter overrides choosing input topics by type (and by name where a type is
    shared: a lidar and a radar PointCloud2)."""
    of = {kind: sorted(t for t, k in topic_types.items() if k == kind) for kind in SENSOR_TYPES}
    clouds = of[CLOUD]
    choice = {
        "topics.camera": _pick(of[IMAGE], "image"),
        "topics.camera_compressed": _pick(of[COMPRESSED], "compressed"),
        "topics.camera_info": _pick(of[CAMERA_INFO], "info"),
        "topics.lidar": _pick([t for t in clouds if "radar" not in t.lower()], "lidar"),
    }
    radar_clouds = [t for t in clouds if "radar" in t.lower()]
    radar_msgs = [t for kind in RADAR_TYPES for t in of[kind]]
    radar = _pick(radar_clouds or radar_msgs, "radar")
    if radar is not None:
        choice["topics.radar"] = radar
        kind = topic_types[radar].rsplit("/", 1)[1]
        choice["topics.radar_type"] = (
            kind if kind in ("RadarScan", "RadarTracks") else "PointCloud2"
        )
    return {k: v for k, v in choice.items() if v is not None}


def resolve_topics(
    params: Any, topic_types: dict[str, str] | None, auto: bool
) -> tuple[dict[str, str], list[str]]:
    """Overrides to apply and lines to tell the user. Raises ``TopicError`` when no
    configured camera topic is in the recording (and ``auto`` found none either)."""
    if topic_types is None:  # an index that cannot be read: nothing to check up front
        return {}, []
    if auto:
        chosen = auto_topics(topic_types)
        lines = [f"--topics auto: {k} = {v}" for k, v in sorted(chosen.items())]
        if "topics.camera" not in chosen and "topics.camera_compressed" not in chosen:
            raise TopicError(
                f"--topics auto found no unambiguous camera topic; sensor topics in the bag: "
                f"{_by_type(topic_types)}"
            )
        return chosen, lines
    rig = rig_cameras(params)
    if rig[0].name:  # a camera rig: every camera should be there
        missing = [
            c.name for c in rig if not {c.image_topic, c.compressed_topic} & set(topic_types)
        ]
        if len(missing) == len(rig):
            raise TopicError(
                f"the bag has none of the rig's camera topics ({rig[0].image_topic}, ...); "
                f"its sensor topics: {_by_type(topic_types)}; set cameras.image_topic / "
                "cameras.compressed_topic (patterns with {name})"
            )
        return {}, [f"warning: rig camera {n} has no image topic in the bag" for n in missing]
    cameras = [params["topics.camera"], params["topics.camera_compressed"]]
    if not any(t in topic_types for t in cameras):
        raise TopicError(
            f"the bag has neither topics.camera ({cameras[0]}) nor topics.camera_compressed "
            f"({cameras[1]}); its sensor topics: {_by_type(topic_types)}; set them with "
            "--set topics.camera=... (or --params), or use --topics auto"
        )
    lines = [
        f"warning: {name} ({params[name]}) is not in the bag"
        for name in ("topics.camera_info", "topics.lidar", "topics.radar")
        if params[name] not in topic_types
    ]
    return {}, lines
