"""The structured scene description of one frame (schema ``mmp.scene/1``).

Built from the core's stage results; ``describe.py`` turns it into text and holds the
schema. Velocities, in base_link axes: ``velocity`` and ``speed_mps`` are over ground
(tracked in the fixed frame) or relative to the ego (tracked in base_link, without
odometry), as ``velocity_frame`` says; ``velocity_relative`` is relative to the ego and
``range_rate_mps`` its part along the line of sight (negative: closing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .describe import SCHEMA_ID, bearing_deg
from .frame import SyncedFrame
from .fusion.consistency import Decision
from .fusion.fusion3d import Object3D
from .fusion.radar_assoc import RadarObjectEvidence
from .fusion.tracking import Track
from .perception.detector import Detections

LATENCY_STAGES = ("detector", "segmenter", "align", "project", "filter", "fusion3d", "tracking")


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _velocities(
    track: Track | None,
    obj: Object3D | None,
    R_base_track: np.ndarray,
    over_ground: bool,
    frame: SyncedFrame,
) -> dict[str, Any]:
    """``velocity``/``speed_mps`` in the tracking frame's sense (``velocity_frame`` names
    it), ``velocity_relative`` to the ego and the range rate (relative, along the line of
    sight). Relative values need the ego's own motion when tracking over ground: without
    it they are unknown (None), never the over-ground value passed off as relative."""
    none = {
        "velocity": None,
        "speed_mps": None,
        "velocity_frame": None,
        "velocity_relative": None,
        "range_rate_mps": None,
    }
    if track is None or obj is None or not track.confirmed:
        return none
    if not (track.velocity_observed or track.hits >= 3):
        return none
    v_base = R_base_track[:2, :2] @ track.velocity
    out = dict(none)
    out["velocity"] = [round(float(v_base[0]), 3), round(float(v_base[1]), 3)]
    out["speed_mps"] = round(float(np.hypot(*v_base)), 3)
    out["velocity_frame"] = "over_ground" if over_ground else "relative_to_ego"
    if over_ground and frame.ego is None:
        return out
    rel = v_base - frame.ego.velocity[:2] if over_ground else v_base
    u = obj.center[:2] / max(np.linalg.norm(obj.center[:2]), 1e-6)
    out["velocity_relative"] = [round(float(rel[0]), 3), round(float(rel[1]), 3)]
    out["range_rate_mps"] = round(float(rel @ u), 3)
    return out


def _lidar_age(obj: Object3D | None) -> dict[str, Any]:
    """An object placed by a lidar sweep older than the frame (sync policy latest): the
    sweep's age and whether the centre was carried to the stamp by the track's velocity
    (else it is where the object was at the sweep, the ego motion taken out)."""
    if obj is None or obj.lidar_age_ms <= 0.0:
        return {}
    return {"lidar_age_ms": round(obj.lidar_age_ms, 3), "center_carried": obj.carried_by_track}


def build_scene(
    frame: SyncedFrame,
    base_frame: str,
    detections: Detections,
    decisions: Sequence[Decision],
    kept: Sequence[int],
    objects: dict[int, Object3D],
    radar: dict[int, RadarObjectEvidence],
    tracks: dict[int, Track],
    tracking_frame: str,
    T_track_base: np.ndarray,
    degraded: Sequence[str],
    models: dict[str, Any],
    latency_ms: dict[str, float],
    drivable: dict[str, Any] | None = None,
    object_classes: dict[int, str] | None = None,
    riders: dict[int, int] | None = None,
) -> dict[str, Any]:
    """One entry per kept box, except a rider's person box: the rider and their bike are
    one object (class ``cyclist``, on the bike's box, ``rider_box_2d`` the person's)."""
    object_classes, riders = object_classes or {}, riders or {}
    rider_of = {bike: person for person, bike in riders.items()}
    R_base_track = T_track_base[:3, :3].T
    over_ground = tracking_frame != base_frame
    objs = []
    for i in kept:
        if i in riders:
            continue
        d = decisions[i]
        obj = objects.get(i)
        track = tracks.get(i)
        sensors = ["camera"]
        if obj is not None and obj.source == "lidar":
            sensors.append("lidar")
        ev = radar.get(i)
        if ev is not None and ev.count:
            sensors.append("radar")
        objs.append(
            {
                "track_id": track.track_id if track is not None else None,
                "confirmed": bool(track is not None and track.confirmed),
                "class": object_classes.get(i, detections.class_names[detections.class_ids[i]]),
                "score": round(float(detections.scores[i]), 4),
                "consistency": {
                    "reason": d.reason,
                    "semantic": _num(d.semantic),
                    "lidar": _num(d.lidar),
                    "radar": _num(d.radar),
                    "evidence": _num(d.evidence),
                },
                "box_2d": [round(float(v), 2) for v in detections.boxes[i]],
                **(
                    {"rider_box_2d": [round(float(v), 2) for v in detections.boxes[rider_of[i]]]}
                    if i in rider_of
                    else {}
                ),
                "center": [round(float(v), 3) for v in obj.center] if obj else None,
                "size": [round(float(v), 3) for v in obj.size] if obj else None,
                "yaw": round(float(obj.yaw), 4) if obj else None,
                "range_m": round(obj.range_m, 3) if obj else None,
                "bearing_deg": round(bearing_deg(obj.center[0], obj.center[1]), 2) if obj else None,
                **_velocities(track, obj, R_base_track, over_ground, frame),
                "sensors": sensors,
                "source": obj.source if obj else "image_only",
                "fit": obj.fit if obj else None,
                **_lidar_age(obj),
            }
        )
    sensors: dict[str, Any] = {
        "camera": {"present": True, "stamp_ns": frame.stamp_ns, "skew_ms": 0.0}
    }
    for name in ("lidar", "radar"):
        part = frame.partners.get(name)
        sensors[name] = {
            "present": part is not None,
            "stamp_ns": part.stamp_ns if part else None,
            "skew_ms": round(part.skew_ns / 1e6, 3) if part else None,
        }
    # sync policy latest: how far each partner was carried to the frame's stamp
    partners = {
        name: {"extrapolated_ms": round(part.extrapolated_ns / 1e6, 3)}
        for name, part in sorted(frame.partners.items())
        if part.extrapolated_ns is not None
    }
    return {
        "schema": SCHEMA_ID,
        "stamp_ns": frame.stamp_ns,
        "frame_id": base_frame,
        "camera_frame_id": frame.camera_frame,
        "tracking_frame": tracking_frame,
        "sensors": sensors,
        "partners": partners,
        "degraded": sorted(set(degraded)),
        "objects": objs,
        "drivable_area": drivable,
        "latency_ms": {k: round(v, 3) for k, v in latency_ms.items() if k in LATENCY_STAGES},
        "models": models,
    }
