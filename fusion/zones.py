"""Inspection zones: polygons in a fixed frame, rules over the tracked objects, events.

A robot integrator describes zones in YAML (``inspection.zones_file``): a polygon in a
frame tf knows (``map``, ``odom``, ``base_link``), an optional height band, and rules:

- ``person_in_zone`` / ``vehicle_in_zone`` (``classes``, default the vehicle classes):
  one event per zone while any such object is inside, listing the track ids seen;
- ``object_left`` (``after_s``, ``max_speed_mps``, ``still_radius_m``): an object other
  than a person that stays inside for longer than ``after_s``: it became slower than
  ``max_speed_mps`` and has not moved more than ``still_radius_m`` from where it was then
  (the displacement, not the speed, ends it: a parked object's tracked speed is noisy as
  its estimated box shifts); hidden for up to ``occlusion_s`` (someone walks past) it is
  still there; one per track;
- ``aisle_blocked`` (``min_free_width_m``, ``axis`` x or y: the aisle's length): the free
  width across the aisle, past the objects in it, falls below ``min_free_width_m``.

Conditions are debounced (``debounce_s``, header time): an event starts once its
condition has held that long (stamped when it began) and ends once it has been false that
long, so one situation is one event. Events are plain dicts, schema ``mmp.events/1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

EVENT_SCHEMA = "mmp.events/1"
VEHICLES = ("car", "truck", "bus", "forklift", "motorcycle", "train")
RULES = ("person_in_zone", "vehicle_in_zone", "object_left", "aisle_blocked")
LEVELS = ("info", "warn", "error")
NS = 1_000_000_000


class ZoneError(ValueError):
    """A zones file that cannot be used; names the file, zone and field."""


@dataclass(frozen=True)
class Rule:
    kind: str
    level: str = "warn"
    classes: tuple[str, ...] = ()
    after_s: float = 10.0
    max_speed_mps: float = 0.2
    min_free_width_m: float = 1.0
    axis: str = "x"
    still_radius_m: float = 1.0
    occlusion_s: float = 2.0


@dataclass(frozen=True)
class Zone:
    name: str
    frame: str
    polygon: np.ndarray  # (N, 2) in ``frame``
    z_range: tuple[float, float]
    rules: tuple[Rule, ...]
    debounce_s: float = 0.5

    def contains(self, xyz: np.ndarray) -> np.ndarray:
        """(N,) bool: points inside the polygon (even-odd rule) and the height band."""
        x, y = xyz[:, 0], xyz[:, 1]
        inside = np.zeros(len(xyz), bool)
        px, py = self.polygon[:, 0], self.polygon[:, 1]
        for i in range(len(px)):
            j = i - 1
            crosses = (py[i] > y) != (py[j] > y)
            at = (px[j] - px[i]) * (y - py[i]) / np.where(py[j] != py[i], py[j] - py[i], 1) + px[i]
            inside ^= crosses & (x < at)
        return inside & (xyz[:, 2] >= self.z_range[0]) & (xyz[:, 2] <= self.z_range[1])


@dataclass(frozen=True)
class TrackedObject:
    """A tracked object in the zone's frame."""

    track_id: int
    cls: str
    center: np.ndarray  # (3,)
    size: np.ndarray  # (3,) length, width, height
    yaw: float
    speed_mps: float
    box_2d: list[float] | None = None  # evidence: where it is in the image


def _rule(zone: str, raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict) or raw.get("type") not in RULES:
        raise ZoneError(f"{where}: zone {zone!r}: rule type must be one of {RULES}, got {raw!r}")
    level = raw.get("level", "warn")
    if level not in LEVELS:
        raise ZoneError(f"{where}: zone {zone!r}: level {level!r}, expected one of {LEVELS}")
    classes = tuple(raw.get("classes", VEHICLES if raw["type"] == "vehicle_in_zone" else ()))
    axis = raw.get("axis", "x")
    if axis not in ("x", "y"):
        raise ZoneError(f"{where}: zone {zone!r}: axis {axis!r}, expected x or y")
    try:
        return Rule(
            raw["type"], level, classes, float(raw.get("after_s", 10.0)),
            float(raw.get("max_speed_mps", 0.2)), float(raw.get("min_free_width_m", 1.0)), axis,
            float(raw.get("still_radius_m", 1.0)), float(raw.get("occlusion_s", 2.0)),
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise ZoneError(f"{where}: zone {zone!r}: {exc}") from None


def load_zones(path: str | Path) -> list[Zone]:
    """Zones from a YAML file (``yaml.safe_load``), validated with precise errors."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ZoneError(f"{path}: cannot read zones ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("zones"), list):
        raise ZoneError(f"{path}: expected a mapping with a 'zones' list")
    zones = []
    for n, z in enumerate(doc["zones"]):
        name = str(z.get("name", f"zone{n}")) if isinstance(z, dict) else f"zone{n}"
        where = f"{path}: zones[{n}]"
        if not isinstance(z, dict):
            raise ZoneError(f"{where}: expected a mapping")
        polygon = np.asarray(z.get("polygon", []), dtype=float)
        if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3:
            raise ZoneError(f"{where}: zone {name!r}: polygon needs >= 3 [x, y] points")
        if not np.isfinite(polygon).all():
            raise ZoneError(f"{where}: zone {name!r}: polygon has a non-finite point")
        z_range = tuple(float(v) for v in z.get("z", (-1e9, 1e9)))
        if len(z_range) != 2 or z_range[0] > z_range[1]:
            raise ZoneError(f"{where}: zone {name!r}: z must be [min, max], got {z.get('z')}")
        rules = tuple(_rule(name, r, where) for r in z.get("rules", []))
        if not rules:
            raise ZoneError(f"{where}: zone {name!r}: no rules")
        frame = str(z.get("frame", "odom"))
        zones.append(Zone(name, frame, polygon, z_range, rules, float(z.get("debounce_s", 0.5))))
    return zones


def free_width(zone: Zone, axis: str, objects: list[TrackedObject]) -> float:
    """The narrowest free width across the aisle (perpendicular to ``axis``) where objects
    stand: the aisle's width minus the union of their footprints' extents there."""
    along, across = (0, 1) if axis == "x" else (1, 0)
    lo, hi = zone.polygon[:, across].min(), zone.polygon[:, across].max()
    extents = []
    for o in objects:
        c, s = abs(np.cos(o.yaw)), abs(np.sin(o.yaw))
        half = np.array([c * o.size[0] + s * o.size[1], s * o.size[0] + c * o.size[1]]) / 2
        a, b = o.center[along], o.center[across]
        extents.append((a - half[along], a + half[along], b - half[across], b + half[across]))
    narrowest = hi - lo
    for a0, a1, _, _ in extents:  # each object's stretch of aisle: who else stands there
        spans = sorted(
            (max(b0, lo), min(b1, hi)) for c0, c1, b0, b1 in extents if c0 < a1 and c1 > a0
        )
        taken, end = 0.0, lo
        for b0, b1 in spans:
            if b1 > end:
                taken += b1 - max(b0, end)
                end = b1
        narrowest = min(narrowest, hi - lo - taken)
    return float(narrowest)


@dataclass
class _Condition:
    since_ns: int | None = None  # first stamp it held (or stopped holding, when active)
    active: bool = False
    event_id: int = 0
    track_ids: set[int] = field(default_factory=set)


class ZoneMonitor:
    def __init__(self, zones: list[Zone]) -> None:
        self.zones = zones
        self._conditions: dict[tuple[str, str, int], _Condition] = {}
        self._slow_since: dict[tuple[str, int], int] = {}  # (zone, track) -> stamp
        self._still_at: dict[tuple[str, int], np.ndarray] = {}  # ... -> xy when it began
        self._last_seen: dict[tuple[str, int], int] = {}  # (zone, track) -> stamp
        self._next_id = 1

    def active(self) -> list[dict[str, Any]]:
        return [
            {"zone": z, "rule": r, "event_id": c.event_id, "track_ids": sorted(c.track_ids)}
            for (z, r, _), c in self._conditions.items()
            if c.active
        ]

    def step(self, stamp_ns: int, objects_by_zone: dict[str, list[TrackedObject]]) -> list[dict]:
        """One frame: ``objects_by_zone`` holds each zone's objects in the zone's frame.
        Returns the events that started or ended at this frame."""
        events: list[dict] = []
        for zone in self.zones:
            objects = objects_by_zone.get(zone.name, [])
            centers = np.array([o.center for o in objects]).reshape(-1, 3)
            inside = [o for o, ok in zip(objects, zone.contains(centers), strict=True) if ok]
            for rule in zone.rules:
                for key, holds, tracks, evidence in self._evaluate(zone, rule, inside, stamp_ns):
                    events += self._debounce(zone, rule, key, holds, tracks, evidence, stamp_ns)
        # Per-track conditions that are over and settled are forgotten: a zone sees new
        # track ids for as long as the robot runs.
        for k in [
            k
            for k, c in self._conditions.items()
            if k[2] and not c.active and c.since_ns is None and (k[0], k[2]) not in self._last_seen
        ]:
            del self._conditions[k]
        return events

    def _evaluate(self, zone: Zone, rule: Rule, inside: list[TrackedObject], stamp_ns: int):
        """(key, condition holds, track ids, evidence object) per situation of the rule."""
        if rule.kind in ("person_in_zone", "vehicle_in_zone"):
            classes = ("person",) if rule.kind == "person_in_zone" else rule.classes
            hits = [o for o in inside if o.cls in classes]
            yield 0, bool(hits), {o.track_id for o in hits}, hits[0] if hits else None
        elif rule.kind == "object_left":
            seen = set()
            for o in inside:
                if o.cls == "person":
                    continue
                key = (zone.name, o.track_id)
                seen.add(o.track_id)
                self._last_seen[key] = stamp_ns
                at = self._still_at.get(key)
                if at is not None and np.hypot(*(o.center[:2] - at)) > rule.still_radius_m:
                    self._slow_since.pop(key, None)  # it moved away: not left there
                    self._still_at.pop(key, None)
                if key not in self._slow_since and o.speed_mps <= rule.max_speed_mps:
                    self._slow_since[key] = stamp_ns
                    self._still_at[key] = np.asarray(o.center[:2], float).copy()
                still_for = stamp_ns - self._slow_since.get(key, stamp_ns)
                yield o.track_id, still_for >= rule.after_s * NS, {o.track_id}, o
            # A track missing for a while (the detector flickers, someone walks past)
            # keeps its still timer and stays left; one gone for longer than occlusion_s
            # (and the debounce) starts afresh if it comes back.
            hidden_ns = max(zone.debounce_s, rule.occlusion_s) * NS
            for key, last in list(self._last_seen.items()):
                if key[0] == zone.name and stamp_ns - last > hidden_ns:
                    del self._last_seen[key]
                    self._slow_since.pop(key, None)
                    self._still_at.pop(key, None)
            for z, r, key in list(self._conditions):
                if z == zone.name and r == rule.kind and key not in seen:
                    since = self._slow_since.get((zone.name, key))
                    left = since is not None and stamp_ns - since >= rule.after_s * NS
                    yield key, left, {key}, None
        else:  # aisle_blocked
            width = free_width(zone, rule.axis, inside) if inside else float("inf")
            blocking = {o.track_id for o in inside}
            yield 0, width < rule.min_free_width_m, blocking, inside[0] if inside else None

    def _debounce(self, zone, rule, key, holds, tracks, evidence, stamp_ns) -> list[dict]:
        c = self._conditions.setdefault((zone.name, rule.kind, key), _Condition())
        debounce = zone.debounce_s * NS
        if holds:
            c.track_ids |= tracks
        if holds != c.active:
            c.since_ns = stamp_ns if c.since_ns is None else c.since_ns
            if stamp_ns - c.since_ns < debounce:
                return []
            changed_at, c.since_ns = c.since_ns, None
            c.active = holds
            if holds:
                c.event_id, self._next_id = self._next_id, self._next_id + 1
            event = self._event(zone, rule, c, changed_at, evidence, stamp_ns)
            if not holds:
                c.track_ids = set()
            return [event]
        c.since_ns = None
        return []

    def _event(self, zone, rule, c, changed_at, evidence, stamp_ns) -> dict:
        return {
            "schema": EVENT_SCHEMA,
            "event_id": c.event_id,
            "zone": zone.name,
            "rule": rule.kind,
            "level": rule.level,
            "state": "started" if c.active else "ended",
            "start_ns" if c.active else "end_ns": int(changed_at),
            "track_ids": sorted(c.track_ids),
            "evidence": {
                "stamp_ns": int(stamp_ns),
                "track_id": evidence.track_id if evidence is not None else None,
                "box_2d": evidence.box_2d if evidence is not None else None,
            },
        }
