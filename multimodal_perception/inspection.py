"""The inspection stage: a frame's tracked objects against the configured zones.

Turns a ``FrameResult`` into ``TrackedObject``s in each zone's frame (tf at the frame
stamp; a zone whose frame tf cannot reach is skipped for the frame and reported) and runs
the ``fusion.zones.ZoneMonitor``; its events go out on the ``events`` topic and the active
ones into the scene JSON.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .frame import FrameResult
from .fusion.tracking import Track
from .fusion.transforms import TransformError, TransformSource
from .fusion.zones import TrackedObject, ZoneMonitor, load_zones
from .ros_pkg import outputs as out


class Inspection:
    def __init__(self, zones_file: str) -> None:
        self.monitor = ZoneMonitor(load_zones(zones_file))
        self.unreachable: dict[str, str] = {}  # zone -> the tf problem of the last frame

    def step(self, result: FrameResult, tf: TransformSource, base_frame: str) -> list[dict]:
        """One camera's frame: its tracked objects against the zones."""
        det = result.detections
        objects = []
        for i in result.kept:
            obj, track = result.objects.get(i), result.tracks.get(i)
            if obj is None or track is None:
                continue
            box = [round(float(v), 1) for v in det.boxes[i]]
            cls = det.class_names[det.class_ids[i]]
            speed = float(np.hypot(*track.velocity))
            objects.append(
                TrackedObject(track.track_id, cls, obj.center, obj.size, obj.yaw, speed, box)
            )
        return self.step_objects(result.stamp_ns, objects, tf, base_frame)

    def step_scene(
        self, scene: dict[str, Any], tracks: dict[int, Track], tf: TransformSource, base_frame: str
    ) -> list[dict]:
        """A camera rig's merged scene (every camera's tracked objects, each once)."""
        objects = []
        for o in scene["objects"]:
            track = tracks.get(o["track_id"]) if o["track_id"] is not None else None
            if track is None or o["center"] is None:
                continue
            speed = float(np.hypot(*track.velocity))
            center, size = np.array(o["center"]), np.array(o["size"])
            objects.append(
                TrackedObject(
                    track.track_id, o["class"], center, size, o["yaw"], speed, o["box_2d"]
                )
            )
        return self.step_objects(scene["stamp_ns"], objects, tf, base_frame)

    def step_objects(
        self, stamp_ns: int, objects: list[TrackedObject], tf: TransformSource, base_frame: str
    ) -> list[dict]:
        """``objects`` in base_link at ``stamp_ns``, moved into each zone's frame."""
        by_zone: dict[str, list[TrackedObject]] = {}
        for zone in self.monitor.zones:
            try:
                T = tf.lookup(zone.frame, base_frame, stamp_ns)
            except TransformError as exc:
                self.unreachable[zone.name] = f"{zone.frame} <- {base_frame}: {exc}"
                continue
            self.unreachable.pop(zone.name, None)
            yaw_offset = float(np.arctan2(T[1, 0], T[0, 0]))
            by_zone[zone.name] = [
                replace(o, center=T[:3, :3] @ o.center + T[:3, 3], yaw=o.yaw + yaw_offset)
                for o in objects
            ]
        return self.monitor.step(stamp_ns, by_zone)

    def active(self) -> list[dict[str, Any]]:
        return self.monitor.active()

    def status(self) -> out.StatusReport:
        """The diagnostics line: active events, and zones tf could not reach."""
        active = self.active()
        problems = "; ".join(f"{z}: {why}" for z, why in self.unreachable.items())
        return out.StatusReport(
            "multimodal_perception: inspection zones",
            out.WARN if active or problems else out.OK,
            problems or f"{len(active)} active events",
            values={f"{e['zone']}.{e['rule']}": str(e["track_ids"]) for e in active},
        )
