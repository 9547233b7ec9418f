"""The inspection stage: a frame's tracked objects against the configured zones.

Turns a ``FrameResult`` into ``TrackedObject``s in each zone's frame (tf at the frame
stamp; a zone whose frame tf cannot reach is skipped for the frame and reported) and runs
the ``fusion.zones.ZoneMonitor``; its events go out on the ``events`` topic and the active
ones into the scene JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .frame import FrameResult
from .fusion.transforms import TransformError, TransformSource
from .fusion.zones import TrackedObject, ZoneMonitor, load_zones


class Inspection:
    def __init__(self, zones_file: str) -> None:
        self.monitor = ZoneMonitor(load_zones(zones_file))
        self.unreachable: dict[str, str] = {}  # zone -> the tf problem of the last frame

    def step(self, result: FrameResult, tf: TransformSource, base_frame: str) -> list[dict]:
        det = result.detections
        by_zone: dict[str, list[TrackedObject]] = {}
        for zone in self.monitor.zones:
            try:
                T = tf.lookup(zone.frame, base_frame, result.stamp_ns)
            except TransformError as exc:
                self.unreachable[zone.name] = f"{zone.frame} <- {base_frame}: {exc}"
                continue
            self.unreachable.pop(zone.name, None)
            objects = []
            for i in result.kept:
                obj, track = result.objects.get(i), result.tracks.get(i)
                if obj is None or track is None:
                    continue
                center = T[:3, :3] @ obj.center + T[:3, 3]
                yaw = obj.yaw + float(np.arctan2(T[1, 0], T[0, 0]))
                speed = float(np.hypot(*track.velocity))
                box = [round(float(v), 1) for v in det.boxes[i]]
                cls = det.class_names[det.class_ids[i]]
                objects.append(
                    TrackedObject(track.track_id, cls, center, obj.size, yaw, speed, box)
                )
            by_zone[zone.name] = objects
        return self.monitor.step(result.stamp_ns, by_zone)

    def active(self) -> list[dict[str, Any]]:
        return self.monitor.active()
