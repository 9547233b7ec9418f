"""Scene descriptions: the versioned JSON contract and grounded natural language.

``SCENE_SCHEMA`` (``mmp.scene/1``) is the structured output on the ``scene`` topic; it is
validated with jsonschema in the tests. ``describe_scene`` turns one scene into one or two
deterministic sentences (counts by class, the nearest objects with range and direction,
moving or approaching objects with speed) and never names an object that is not in the
structured list. English by default, Chinese by parameter.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

SCHEMA_ID = "mmp.scene/1"

_VEC3 = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
SCENE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "type": "object",
    "required": [
        "schema",
        "stamp_ns",
        "frame_id",
        "camera_frame_id",
        "sensors",
        "objects",
        "latency_ms",
        "models",
        "degraded",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "stamp_ns": {"type": "integer", "minimum": 0},
        "frame_id": {"type": "string"},
        "camera_frame_id": {"type": "string"},
        "tracking_frame": {"type": "string"},
        "sensors": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["present"],
                "properties": {
                    "present": {"type": "boolean"},
                    "stamp_ns": {"type": ["integer", "null"]},
                    "skew_ms": _NULLABLE_NUMBER,
                },
            },
        },
        # sync policy latest: how far each partner's data was carried to stamp_ns
        "partners": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["extrapolated_ms"],
                "properties": {"extrapolated_ms": {"type": "number", "minimum": 0}},
            },
        },
        "degraded": {"type": "array", "items": {"type": "string"}},
        "objects": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "track_id",
                    "confirmed",
                    "class",
                    "score",
                    "consistency",
                    "box_2d",
                    "center",
                    "size",
                    "yaw",
                    "range_m",
                    "bearing_deg",
                    "velocity",
                    "sensors",
                    "source",
                ],
                "properties": {
                    "track_id": {"type": ["integer", "null"]},
                    "confirmed": {"type": "boolean"},
                    "class": {"type": "string"},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "consistency": {
                        "type": "object",
                        "required": ["reason", "semantic", "lidar", "radar", "evidence"],
                        "properties": {
                            "reason": {
                                "enum": [
                                    "consistent",
                                    "rescued_by_lidar",
                                    "rescued_by_radar",
                                    "not_judged",
                                ]
                            },
                            "semantic": _NULLABLE_NUMBER,
                            "lidar": _NULLABLE_NUMBER,
                            "radar": _NULLABLE_NUMBER,
                            "evidence": _NULLABLE_NUMBER,
                        },
                    },
                    "rider_box_2d": {"type": "array", "items": {"type": "number"}},
                    "box_2d": {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": 4,
                        "maxItems": 4,
                    },
                    "center": {"anyOf": [_VEC3, {"type": "null"}]},
                    "size": {"anyOf": [_VEC3, {"type": "null"}]},
                    "yaw": _NULLABLE_NUMBER,
                    "range_m": {"type": ["number", "null"], "minimum": 0},
                    "bearing_deg": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
                    "velocity": {
                        "type": ["array", "null"],
                        "items": {"type": "number"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "speed_mps": _NULLABLE_NUMBER,
                    # what `velocity` and `speed_mps` are measured against
                    "velocity_frame": {"enum": ["over_ground", "relative_to_ego", None]},
                    "velocity_relative": {
                        "type": ["array", "null"],
                        "items": {"type": "number"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "range_rate_mps": _NULLABLE_NUMBER,
                    "sensors": {"type": "array", "items": {"enum": ["camera", "lidar", "radar"]}},
                    "source": {"enum": ["lidar", "camera_only", "image_only"]},
                    # placed by a lidar sweep this much older than stamp_ns (policy latest);
                    # center_carried: moved to stamp_ns by its track's velocity
                    "lidar_age_ms": {"type": "number", "minimum": 0},
                    "center_carried": {"type": "boolean"},
                },
            },
        },
        "drivable_area": {"type": ["object", "null"]},
        "latency_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "events": {"type": "array", "items": {"type": "object"}},  # active zone events
        "models": {"type": "object"},
    },
}

_PLURAL_EN = {"person": "people", "bus": "buses"}
_NAMES_ZH = {
    "car": "汽车",
    "truck": "卡车",
    "bus": "公交车",
    "person": "行人",
    "bicycle": "自行车",
    "motorcycle": "摩托车",
    "cyclist": "骑车人",
    "train": "火车",
}


def direction(bearing_deg: float, language: str = "en") -> str:
    b = bearing_deg
    if language == "zh":
        if abs(b) <= 15:
            return "正前方"
        if abs(b) <= 60:
            return "左前方" if b > 0 else "右前方"
        if abs(b) <= 120:
            return "左侧" if b > 0 else "右侧"
        return "左后方" if b > 0 else "右后方"
    if abs(b) <= 15:
        return "ahead"
    if abs(b) <= 60:
        return "ahead-left" if b > 0 else "ahead-right"
    if abs(b) <= 120:
        return "to the left" if b > 0 else "to the right"
    return "behind-left" if b > 0 else "behind-right"


def _count_phrase(cls: str, n: int) -> str:
    name = cls if n == 1 else _PLURAL_EN.get(cls, cls + "s")
    return f"{n} {name}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe_scene(
    scene: dict[str, Any], language: str = "en", nearest: int = 2, moving_threshold: float = 1.0
) -> str:
    """One or two sentences about the structured scene, naming only its objects. Confirmed
    tracks are described; objects not yet confirmed are counted as tentative, never hidden
    (the scene publishes them)."""
    objects = [o for o in scene["objects"] if o["confirmed"]]
    if language not in ("en", "zh"):
        raise ValueError(f"description language {language!r}: expected 'en' or 'zh'")
    tentative = len(scene["objects"]) - len(objects)
    if not objects:
        if not tentative:
            return "未检测到目标。" if language == "zh" else "No objects detected."
        counts = Counter(o["class"] for o in scene["objects"])
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if language == "zh":
            return f"尚无确认的目标；{tentative}个待确认目标。"
        return (
            "No confirmed objects yet; tentative: "
            + _join([_count_phrase(c, n) for c, n in ordered])
            + "."
        )
    also = ""
    if tentative:
        zh = f"另有{tentative}个待确认目标。"
        also = zh if language == "zh" else f" {tentative} more tentative."
    counts = Counter(o["class"] for o in objects)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ranged = [o for o in objects if o["range_m"] is not None]
    near = sorted(ranged, key=lambda o: (o["range_m"], o["track_id"] or 0))[:nearest]
    moving = [
        o for o in objects if o.get("speed_mps") is not None and o["speed_mps"] >= moving_threshold
    ]
    # Approaching: closing on the ego faster than the threshold (range rate < -threshold).
    approaching = [o for o in objects if (o.get("range_rate_mps") or 0.0) < -moving_threshold]
    if language == "zh":
        first = (
            "视野中有"
            + "、".join(
                f"{n}辆{_NAMES_ZH.get(c, c)}"
                if c in ("car", "truck", "bus")
                else f"{n}个{_NAMES_ZH.get(c, c)}"
                for c, n in ordered
            )
            + "。"
        )
        near_txt = "；".join(
            f"{_NAMES_ZH.get(o['class'], o['class'])}#{o['track_id']}在"
            f"{direction(o['bearing_deg'], 'zh')}{o['range_m']:.1f}米"
            for o in near
        )
        second = f"最近的是{near_txt}" if near else "距离未知"
        if approaching:
            o = min(approaching, key=lambda o: o["range_m"])
            second += (
                f"；{_NAMES_ZH.get(o['class'], o['class'])}#{o['track_id']}正以"
                f"{-o['range_rate_mps']:.1f}米/秒接近"
            )
        return first + second + "。" + also
    first = _join([_count_phrase(c, n) for c, n in ordered]) + " in view."
    near_txt = "; ".join(
        f"{o['class']} #{o['track_id']} {o['range_m']:.1f} m {direction(o['bearing_deg'])}"
        for o in near
    )
    second = f"Nearest: {near_txt}." if near else "Ranges unknown."
    if approaching:
        o = min(approaching, key=lambda o: o["range_m"])
        closing = -o["range_rate_mps"]
        second += f" The {o['class']} #{o['track_id']} is approaching at {closing:.1f} m/s."
    elif moving:
        o = max(moving, key=lambda o: o["speed_mps"])
        second += f" The {o['class']} #{o['track_id']} is moving at {o['speed_mps']:.1f} m/s."
    return f"{first} {second}{also}"


def bearing_deg(x: float, y: float) -> float:
    return math.degrees(math.atan2(y, x))
