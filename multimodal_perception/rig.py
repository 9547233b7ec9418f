"""The sensor rig as the parameters describe it: the cameras and the sync windows.

One camera (``cameras.names`` empty) reads ``topics.camera*``. A rig lists its cameras by
name; each camera's topics come from the ``cameras.*_topic`` patterns (``{name}`` replaced)
unless ``cameras.<name>.*`` overrides them. Every camera is a frame anchor with its own
lidar and radar partners (one ``SyncConfig`` shared by all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import MS, ParameterError, Parameters
from .fusion.rig_sync import RigSynchronizer
from .fusion.sync import SensorWindow, SyncConfig, Synchronizer

# ROS 2 name tokens: the camera name becomes a namespace segment and a parameter segment.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RigCamera:
    name: str  # '' for the single camera of a one-camera setup
    image_topic: str
    compressed_topic: str
    info_topic: str
    score_threshold: float = -1.0  # -1: the global detector threshold

    def output(self, name: str) -> str:
        """An output's name under this camera's namespace (relative, like every output)."""
        return f"{self.name}/{name}" if self.name else name


def camera_names(params: Parameters) -> list[str]:
    names = [n.strip() for n in params["cameras.names"].split(",") if n.strip()]
    for n in names:
        if not _NAME.match(n):
            raise ParameterError(
                f"parameter cameras.names: camera name {n!r} must start with a letter and "
                "hold only letters, digits and '_' (it becomes a namespace)"
            )
    if len(set(names)) != len(names):
        raise ParameterError(f"parameter cameras.names={params['cameras.names']!r}: repeated name")
    merged_on = params["cameras.merged_on"]
    if merged_on and merged_on not in names:
        raise ParameterError(f"parameter cameras.merged_on={merged_on!r}: not in cameras.names")
    return names


def rig_cameras(params: Parameters) -> list[RigCamera]:
    """The cameras, in the order given (one unnamed camera without ``cameras.names``)."""
    names = camera_names(params)
    if not names:
        return [
            RigCamera(
                "",
                params["topics.camera"],
                params["topics.camera_compressed"],
                params["topics.camera_info"],
            )
        ]

    def topic(name: str, field: str) -> str:
        override = params.values.get(f"cameras.{name}.{field}", "")
        return override or params[f"cameras.{field}"].replace("{name}", name)

    return [
        RigCamera(
            name,
            topic(name, "image_topic"),
            topic(name, "compressed_topic"),
            topic(name, "info_topic"),
            float(params.values.get(f"cameras.{name}.score_threshold", -1.0)),
        )
        for name in names
    ]


def merged_camera(params: Parameters) -> str:
    """The camera whose frames publish the merged scene ('' for a one-camera setup)."""
    names = camera_names(params)
    return (params["cameras.merged_on"] or names[0]) if names else ""


def synchronizer(params: Parameters, cameras: list[RigCamera]) -> Synchronizer | RigSynchronizer:
    """One camera: a Synchronizer; a rig: one per camera, keyed by image topic."""
    if not cameras[0].name:
        return Synchronizer(sync_config(params))
    topics = {t: c.name for c in cameras for t in (c.image_topic, c.compressed_topic)}
    return RigSynchronizer(sync_config(params), topics)


def camera_of_topic(cameras: list[RigCamera]) -> dict[str, RigCamera]:
    """Each camera's image, compressed image and CameraInfo topic -> the camera."""
    return {t: c for c in cameras for t in (c.image_topic, c.compressed_topic, c.info_topic)}


def sync_config(params: Parameters) -> SyncConfig:
    anchor = params["sync.anchor"]
    rates = {s: params[f"sensors.{s}.rate_hz"] for s in ("camera", "lidar", "radar")}

    def offset(sensor: str) -> float:
        return 0.0 if sensor == "camera" else params[f"sensors.{sensor}.offset_ms"]

    windows = {}
    for sensor in ("camera", "lidar", "radar"):
        if sensor == anchor:
            continue
        skew = -1.0 if sensor == "camera" else params[f"sensors.{sensor}.max_skew_ms"]
        if skew < 0:
            skew = 500.0 / rates[sensor]
        policy = "wait" if sensor == "camera" else params[f"sync.{sensor}.policy"]
        max_age = 0.0 if sensor == "camera" else params[f"sync.{sensor}.max_age_ms"]
        windows[sensor] = SensorWindow(
            round((offset(sensor) - offset(anchor)) * MS),
            round(skew * MS),
            policy,
            round(max_age * MS),
        )
    return SyncConfig(
        anchor=anchor,
        windows=windows,
        timeout_ns=round(params["sync.timeout_ms"] * MS),
        max_buffer=int(params["sync.max_buffer"]),
        max_age_ns=round(params["sync.max_age_ms"] * MS),
        time_jump_ns=round(params["sync.time_jump_ms"] * MS),
        reorder_tolerance_ns=round(params["sync.reorder_tolerance_ms"] * MS),
    )
