"""The tracking stage: one ``Tracker`` and the frame it tracks in, shared by every camera.

A one-camera session has one; a camera rig has one for all its cameras, so an object
seen by two cameras (in the overlap of their views, or moving from one view to the next)
is associated in 3D and stays one track. Each camera frame then passes which tracks the
camera could see (``in_view``): a track outside its view coasts without a miss.

Owns: the tracker, the tracking frame (``frames.fixed`` while odometry lasts, else
``frames.base``) and base_link's pose in it at the newest frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .config import Parameters
from .frame import SyncedFrame
from .fusion.fusion3d import Object3D
from .fusion.objects import measurements
from .fusion.projection import project_points
from .fusion.radar_assoc import RadarObjectEvidence
from .fusion.tracking import Track, Tracker, TrackerConfig

# Height (tracking frame, above the ground at z = 0) at which a track is taken to be when
# asking whether a camera sees it: the centre of a pedestrian or a car.
TRACK_VIEW_HEIGHT_M = 0.8


def tracker_config(p: Parameters) -> TrackerConfig:
    return TrackerConfig(
        confirm_hits=int(p["tracking.confirm_hits"]),
        max_missed_s=float(p["tracking.max_missed_s"]),
    )


def in_view(frame: SyncedFrame, T_track_base: np.ndarray) -> Callable[[list[Track]], np.ndarray]:
    """Which tracks this frame's camera could have seen: in front of it and projecting
    into its image (with the camera's own model), all tracks in one projection. No
    calibration: none."""
    camera, T_cam_base = frame.camera, frame.T_cam_base
    if camera is None or T_cam_base is None:
        return lambda tracks: np.zeros(len(tracks), dtype=bool)
    T_cam_track = T_cam_base @ np.linalg.inv(T_track_base)

    def visible(tracks: list[Track]) -> np.ndarray:
        out = np.zeros(len(tracks), dtype=bool)
        if tracks:
            p = np.array([[t.x[0], t.x[1], TRACK_VIEW_HEIGHT_M] for t in tracks])
            out[project_points(p, T_cam_track, camera).index] = True
        return out

    return visible


class TrackingStage:
    def __init__(self, params: Parameters) -> None:
        self.params = params
        self.tracker = Tracker(tracker_config(params))
        self.frame = params["frames.base"]  # the frame tracks live in
        self.T_track_base = np.eye(4)
        self._last_odometry_ns: int | None = None

    def update_parameters(self, params: Parameters) -> None:
        self.params = params
        self.tracker.config = tracker_config(params)

    def reset(self) -> None:
        """Header time went backwards: drop the tracks, keep the ids unique."""
        self.tracker.reset()
        self._last_odometry_ns = None

    def step(
        self,
        frame: SyncedFrame,
        classes: Sequence[str],
        scores: np.ndarray,
        kept: Sequence[int],
        objects: dict[int, Object3D],
        radar: dict[int, RadarObjectEvidence],
        degraded: list[str],
        shared: bool = False,
    ) -> dict[int, Track]:
        """Track in the fixed frame while odometry lasts. A frame without odometry leaves
        the tracker where it is (its tracks coast) unless odometry has been gone longer
        than a track lives; then tracking restarts in base_link, with new ids. ``shared``:
        other cameras feed this tracker too (only tracks in this camera's view miss)."""
        base, fixed = self.params["frames.base"], self.params["frames.fixed"]
        stamp = frame.stamp_ns
        if frame.T_fixed_base is not None:
            if self.frame != fixed and self.tracker.tracks:
                self.tracker.reset()  # positions in base_link mean nothing in odom
            self.frame, self.T_track_base = fixed, frame.T_fixed_base
            self._last_odometry_ns = stamp
        else:
            degraded.append("no_odometry")
            lost_ns = self.tracker.config.max_missed_s * 1e9
            recent = (
                self._last_odometry_ns is not None and stamp - self._last_odometry_ns <= lost_ns
            )
            if self.frame == fixed and recent:
                return {}
            if self.frame != base and self.tracker.tracks:
                self.tracker.reset()
            self.frame, self.T_track_base = base, np.eye(4)
        ids = [i for i in kept if i in objects]
        ms = measurements(ids, objects, classes, scores, radar, self.T_track_base)
        observable = in_view(frame, self.T_track_base) if shared else None
        self.tracker.step(stamp, ms, observable)
        return dict(zip(ids, self.tracker.assignment, strict=True))
