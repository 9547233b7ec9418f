"""The merged scene of a camera rig: every camera's objects, each physical object once.

Each camera's frame has its own scene (published under the camera's namespace). On every
frame of the merging camera (``cameras.merged_on``) the newest scene of each camera that
is recent enough (``cameras.merge_window_ms``) is folded into one: objects are keyed by
their track id (the rig shares one tracker, so an object seen by two cameras has one id)
and the newest observation wins; its centre is the track's, predicted to the merged
stamp and put in base_link at that stamp (another camera's frame may be up to a rig cycle
older, and the vehicle moves meanwhile). Objects without a track (no 3D position) are
kept per camera: nothing says whether two of them are one object.

The merged scene is ``mmp.scene/1`` with two additions: ``cameras`` (per camera: the
stamp and frame id of the frame used, its object count) and, per object, ``camera`` (the
camera of the newest observation) and ``seen_by`` (every camera that saw it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .describe import bearing_deg
from .frame import FrameResult
from .fusion.tracking import Track
from .tracking_stage import TrackingStage


class RigMerger:
    def __init__(self, cameras: list[str], merged_on: str, window_ns: int) -> None:
        self.cameras = cameras
        self.merged_on = merged_on
        self.window_ns = window_ns
        self.latest: dict[str, FrameResult] = {}

    def reset(self) -> None:
        self.latest.clear()

    def add(self, camera: str, result: FrameResult) -> bool:
        """Remember a camera's newest frame; True when it is the merging camera's."""
        if camera not in self.latest or result.stamp_ns >= self.latest[camera].stamp_ns:
            self.latest[camera] = result
        return camera == self.merged_on

    def merged_scene(self, result: FrameResult, tracking: TrackingStage) -> dict[str, Any]:
        """The rig's scene at ``result``'s stamp (a frame of the merging camera, just
        tracked, so ``tracking`` holds base_link's pose at this stamp)."""
        stamp = result.stamp_ns
        tracks = {t.track_id: t for t in tracking.tracker.tracks}
        tracker_stamp = tracking.tracker.stamp
        T_base_track = np.linalg.inv(tracking.T_track_base)
        by_track: dict[int, dict[str, Any]] = {}
        seen_by: dict[int, set[str]] = {}
        untracked: list[dict[str, Any]] = []
        cameras: dict[str, Any] = {}
        degraded: set[str] = set()
        for camera in self.cameras:
            r = self.latest.get(camera)
            if r is None or abs(stamp - r.stamp_ns) > self.window_ns:
                continue
            cameras[camera] = {
                "stamp_ns": r.stamp_ns,
                "frame_id": r.camera_frame,
                "objects": len(r.scene["objects"]),
            }
            degraded.update(f"{camera}:{d}" for d in r.scene["degraded"])
            for obj in r.scene["objects"]:
                entry = {**obj, "camera": camera, "_stamp": r.stamp_ns}
                tid = obj["track_id"]
                if tid is None:
                    untracked.append(entry)
                    continue
                seen_by.setdefault(tid, set()).add(camera)
                if tid not in by_track or r.stamp_ns > by_track[tid]["_stamp"]:
                    by_track[tid] = entry
        objects = []
        for tid, entry in sorted(by_track.items()):
            track = tracks.get(tid)
            if track is not None and entry["center"] is not None and tracker_stamp is not None:
                entry["center"] = _track_center(
                    track, entry["center"][2], stamp - tracker_stamp, T_base_track
                )
                x, y = entry["center"][:2]
                entry["range_m"] = round(math.hypot(x, y), 3)
                entry["bearing_deg"] = round(bearing_deg(x, y), 2)
            entry["seen_by"] = sorted(seen_by[tid])
            objects.append(entry)
        for entry in untracked:
            entry["seen_by"] = [entry["camera"]]
        objects += untracked
        for entry in objects:
            del entry["_stamp"]
        return {
            **result.scene,
            "cameras": cameras,
            "degraded": sorted(degraded),
            "objects": objects,
        }


def _track_center(track: Track, z: float, dt_ns: int, T_base_track: np.ndarray) -> list[float]:
    """The track's position predicted ``dt_ns`` ahead, in base_link (z kept from the
    observation: the tracker is planar)."""
    xy = track.x[:2] + track.x[2:] * (dt_ns / 1e9)
    p = T_base_track @ np.array([xy[0], xy[1], 0.0, 1.0])
    return [round(float(p[0]), 3), round(float(p[1]), 3), z]
