"""The contracts of the frame core: what goes into one frame's fusion and what comes out.

``SyncedFrame`` is one camera image with everything aligned to its header stamp: the
calibration, the camera's pose, lidar and radar moved to that stamp, odometry and ego
motion. ``FrameResult`` is everything the core concluded about it. Both hold numpy arrays
and plain values only (no ROS or rosbags message types), so the core runs, and is tested,
without any message layer. The session driver (``pipeline.py``) builds the first from
messages and turns the second into messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .fusion.consistency import Decision
from .fusion.fusion3d import Object3D
from .fusion.radar_assoc import RadarObjectEvidence
from .fusion.tracking import Track
from .perception.detector import Detections
from .perception.segmenter import Segmentation
from .ros_pkg.camera_info import CameraModel

if TYPE_CHECKING:
    from .rig import RigCamera


@dataclass(frozen=True)
class PartnerInfo:
    """When a partner sensor's message was taken, relative to the frame."""

    stamp_ns: int
    skew_ns: int  # partner stamp - (camera stamp + configured offset)
    # sync policy ``latest``: camera stamp - partner stamp, how far its data was carried
    # to the frame's time (points by ego motion, objects by their tracks); None: ``wait``
    extrapolated_ns: int | None = None


@dataclass(frozen=True)
class LidarSweep:
    """Lidar points moved to the camera stamp (when odometry allows), in the lidar frame,
    with the lidar's pose in base_link at its own stamp."""

    xyz: np.ndarray  # (N, 3) float32, lidar frame
    T_base_lidar: np.ndarray  # (4, 4)


@dataclass(frozen=True)
class RadarReturns:
    """Radar returns in base_link at the camera stamp, radial velocity over ground."""

    xyz: np.ndarray  # (N, 3) float64, base_link
    radial_velocity: np.ndarray  # (N,) m/s, + receding; over ground when ego motion is known
    sensor_xy: np.ndarray  # (2,) the radar's position in base_link


@dataclass(frozen=True)
class EgoMotion:
    """The vehicle's own motion at the frame stamp, from odometry in tf."""

    velocity: np.ndarray  # (3,) m/s in base_link axes
    yaw_rate: float  # rad/s


@dataclass(frozen=True)
class SyncedFrame:
    """One frame, aligned in time and space: the core's input."""

    stamp_ns: int  # the camera's header stamp: the frame's time
    image: np.ndarray  # (H, W, 3) uint8 BGR
    camera_frame: str
    camera: CameraModel | None  # None: no CameraInfo yet, or of another image size
    T_cam_base: np.ndarray | None  # base_link -> camera optical frame at the stamp
    lidar: LidarSweep | None = None
    radar: RadarReturns | None = None
    T_fixed_base: np.ndarray | None = None  # odometry: base_link in the fixed frame
    ego: EgoMotion | None = None
    partners: dict[str, PartnerInfo] = field(default_factory=dict)
    degraded: tuple[str, ...] = ()  # what alignment could not do, one token each
    notes: tuple[str, ...] = ()  # the same in words, naming the field and value


@dataclass
class FrameResult:
    """What the core concluded about one frame (indices refer to ``detections``)."""

    stamp_ns: int
    camera_frame: str
    image: np.ndarray  # the camera image the result describes (not a copy)
    detections: Detections  # every detector box of a wanted class, before the filter
    decisions: list[Decision]  # one per detection
    kept: list[int]  # boxes kept by the filter and not duplicates
    duplicates: dict[int, int]  # box kept by the filter but dropped as a duplicate -> twin
    objects: dict[int, Object3D]  # kept box -> its 3D object
    radar: dict[int, RadarObjectEvidence]  # kept box -> its radar returns
    tracks: dict[int, Track]  # kept box -> its track
    tracking_frame: str
    segmentation: Segmentation | None
    scene: dict[str, Any]  # schema mmp.scene/1 (describe.SCHEMA_ID)
    text: str
    timings_ms: dict[str, float]
    unwanted: int = 0  # detections of classes not in detector.classes
    # ... those detections (open-vocabulary findings look at them: things outside the list)
    other_detections: Detections | None = None
    degraded: tuple[str, ...] = ()
    object_classes: dict[int, str] = field(default_factory=dict)  # 3D class, where not the box's
    riders: dict[int, int] = field(default_factory=dict)  # person box -> the bike box it rides
    lidar_uv: np.ndarray | None = None  # projected lidar points (overlays)
    lidar_depth: np.ndarray | None = None
    radar_uv: np.ndarray | None = None

    def rejected(self) -> list[int]:
        """Boxes the filter dropped, then boxes dropped as duplicates."""
        return [i for i, d in enumerate(self.decisions) if not d.keep] + sorted(self.duplicates)


class Aligned(NamedTuple):
    """A synchronised group aligned into a frame, waiting for its core (``Pipeline``)."""

    topic: str  # the anchor's
    camera: RigCamera
    frame: SyncedFrame
    align_ms: float
