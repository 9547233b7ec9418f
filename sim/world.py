"""Scenarios of the synthetic world: static scenery, actors with trajectories, the ego rig.

Four scenarios, seeded and deterministic: ``urban_crossing`` (a four-way intersection
with buildings, poles, trees, cars, a bus, a truck, a cyclist and pedestrians crossing),
``highway_following`` (a divided highway, ego following a lead car among trucks and
overtaking traffic), ``indoor_aisle`` (a warehouse aisle between racks with people and
forklifts, seen by an inspection robot driving down it) and ``indoor_inspection`` (the
same warehouse, scripted so that each inspection rule fires once at a known time, seen by
the robot standing at the aisle's start). The world frame is ``odom``: z up, ground at
z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .classes import ACTOR_KINDS, TRAINID
from .meshes import Mesh, actor_mesh, box, cylinder, sphere
from .trajectory import (
    Trajectory,
    stop_and_go,
    stopping,
    straight,
    turning,
    waiting_then_walking,
)


@dataclass(frozen=True)
class Mount:
    """A sensor's pose in base_link: translation and rotation (columns = sensor axes)."""

    xyz: tuple[float, float, float]
    R: np.ndarray


# Optical frame axes in base_link: x_opt = -y_base (right), y_opt = -z_base (down), z_opt = x.
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _pitch_down(R: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return Ry @ R


@dataclass(frozen=True)
class Rig:
    camera: Mount
    lidar: Mount
    radar: Mount
    width: int = 640
    height: int = 384
    hfov_deg: float = 80.0
    distortion: tuple[float, ...] = (-0.12, 0.03, 0.0004, -0.0003, 0.0)
    lidar_beams: int = 32
    lidar_elevation_deg: tuple[float, float] = (-25.0, 12.0)
    lidar_azimuth_steps: int = 720
    lidar_max_range: float = 100.0
    radar_max_range: float = 120.0

    @property
    def K(self) -> np.ndarray:
        f = self.width / 2 / np.tan(np.radians(self.hfov_deg) / 2)
        return np.array([[f, 0, self.width / 2 - 0.5], [0, f, self.height / 2 - 0.5], [0, 0, 1]])


VEHICLE_RIG = Rig(
    camera=Mount((1.6, 0.0, 1.5), _pitch_down(R_BASE_OPTICAL, 3.0)),
    lidar=Mount((1.2, 0.0, 1.9), np.eye(3)),
    radar=Mount((3.7, 0.0, 0.55), np.eye(3)),
)
ROBOT_RIG = Rig(
    camera=Mount((0.35, 0.0, 1.1), _pitch_down(R_BASE_OPTICAL, 5.0)),
    lidar=Mount((0.2, 0.0, 0.9), np.eye(3)),
    radar=Mount((0.45, 0.0, 0.35), np.eye(3)),
    hfov_deg=90.0,
    lidar_elevation_deg=(-30.0, 20.0),
    lidar_max_range=50.0,
    radar_max_range=40.0,
)


@dataclass
class Actor:
    track_id: int
    kind: str
    size: tuple[float, float, float]  # l, w, h
    trajectory: Trajectory
    colour_bgr: tuple[float, float, float]
    mesh: Mesh = field(init=False)

    def __post_init__(self) -> None:
        self.mesh = actor_mesh(self.kind, self.size)

    @property
    def detection_class(self) -> str:
        return ACTOR_KINDS[self.kind].detection_class


@dataclass(frozen=True)
class LaneMark:
    """A painted line on the ground along x or y (for the shader only)."""

    axis: str  # "x" or "y"
    offset: float  # the constant coordinate
    start: float
    stop: float
    dashed: bool = True
    width: float = 0.15


@dataclass
class World:
    name: str
    static: Mesh
    actors: list[Actor]
    ego: Trajectory
    rig: Rig
    lane_marks: list[LaneMark]
    outdoor: bool = True


CAR_COLOURS = [
    (0.15, 0.15, 0.7),
    (0.7, 0.25, 0.1),
    (0.8, 0.8, 0.8),
    (0.1, 0.1, 0.1),
    (0.2, 0.6, 0.2),
    (0.1, 0.5, 0.85),
    (0.5, 0.5, 0.55),
]
CLOTHES = [(0.6, 0.2, 0.2), (0.2, 0.2, 0.6), (0.2, 0.5, 0.3), (0.1, 0.1, 0.1), (0.5, 0.5, 0.6)]


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.static = Mesh.empty()
        self.actors: list[Actor] = []

    def size(self, kind: str) -> tuple[float, float, float]:
        spec = ACTOR_KINDS[kind]
        return tuple(float(v) for v in self.rng.uniform(spec.size_min, spec.size_max))

    def actor(self, kind: str, trajectory: Trajectory) -> None:
        palette = CLOTHES if kind in ("person", "cyclist") else CAR_COLOURS
        colour = palette[int(self.rng.integers(len(palette)))]
        if kind == "forklift":
            colour = (0.1, 0.65, 0.9)
        self.actors.append(Actor(len(self.actors) + 1, kind, self.size(kind), trajectory, colour))

    def slab(self, x0: float, x1: float, y0: float, y1: float, top: float, cls: str) -> None:
        thickness = 0.2
        self.static += box(
            (abs(x1 - x0), abs(y1 - y0), thickness),
            ((x0 + x1) / 2, (y0 + y1) / 2, top - thickness / 2),
            TRAINID[cls],
        )

    def building(self, cx: float, cy: float, sx: float, sy: float, h: float) -> None:
        self.static += box((sx, sy, h), (cx, cy, h / 2), TRAINID["building"])

    def pole(self, x: float, y: float, h: float = 6.0) -> None:
        self.static += cylinder(0.12, h, (x, y, h / 2), "z", TRAINID["pole"], 8)

    def sign(self, x: float, y: float) -> None:
        self.pole(x, y, 2.6)
        self.static += box((0.05, 0.7, 0.7), (x, y, 2.9), TRAINID["traffic sign"])

    def tree(self, x: float, y: float) -> None:
        h = float(self.rng.uniform(3.0, 5.0))
        self.static += cylinder(0.2, h, (x, y, h / 2), "z", TRAINID["vegetation"], 8)
        self.static += sphere(
            float(self.rng.uniform(1.4, 2.2)), (x, y, h + 0.8), TRAINID["vegetation"]
        )


def urban_crossing(seed: int = 0) -> World:
    b = _Builder(seed)
    W, S, L = 7.0, 3.0, 160.0  # road half-width, sidewalk width, half-extent
    b.slab(-L, L, -L, L, 0.0, "terrain")
    b.slab(-L, L, -W, W, 0.01, "road")
    b.slab(-W, W, -L, L, 0.01, "road")
    for sx in (1, -1):
        for sy in (1, -1):
            b.slab(sx * W, sx * L, sy * W, sy * (W + S), 0.15, "sidewalk")
            b.slab(sx * W, sx * (W + S), sy * (W + S), sy * L, 0.15, "sidewalk")
            # Building rows set back behind a verge with trees.
            for along_x in (True, False):
                pos = W + S + 5.0
                while pos < L - 10:
                    length = float(b.rng.uniform(8, 20))
                    depth = float(b.rng.uniform(8, 14))
                    h = float(b.rng.uniform(6, 24))
                    far = W + S + 4.0 + depth / 2
                    if along_x:
                        b.building(sx * (pos + length / 2), sy * far, length, depth, h)
                    else:
                        b.building(sx * far, sy * (pos + length / 2), depth, length, h)
                    pos += length + float(b.rng.uniform(2, 5))
            for d in np.arange(W + S + 6, 90, 15.0):
                b.pole(sx * d, sy * (W + S - 0.4))
                b.pole(sx * (W + S - 0.4), sy * d)
            for d in np.arange(W + S + 12, 90, 22.0):
                b.tree(sx * d, sy * (W + S + 2.0))
    b.sign(W + S - 0.6, -(W + 0.8))
    marks = [
        LaneMark("x", 0.0, -L, -W - 1, True),
        LaneMark("x", 0.0, W + 1, L, True),
        LaneMark("y", 0.0, -L, -W - 1, True),
        LaneMark("y", 0.0, W + 1, L, True),
        LaneMark("x", -3.5, -L, -W - 1),
        LaneMark("x", 3.5, W + 1, L),
        LaneMark("y", -W - 0.5, -W, -0.1, False, 0.4),
    ]
    for y in np.arange(-W + 0.5, W, 0.9):  # zebra crossing beyond the intersection
        marks.append(LaneMark("x", float(y), W + 1.5, W + 4.5, False, 0.45))
    # Actors (driving on the right: +x traffic in y < 0). Timings are chosen so that nobody
    # collides (test_sim checks it): the truck crosses ahead of the ego around t = 4 s, a
    # car turns right into the northbound lane at t = 8-9.4 s, pedestrians cross.
    b.actor("car", straight(-10.0, -1.75, 0.0, 6.0))  # lead car
    b.actor("car", straight(40.0, 1.75, np.pi, 7.0))  # oncoming
    b.actor("bus", straight(75.0, 1.75, np.pi, 6.5))
    b.actor("car", stopping(-1.75, 40.0, -np.pi / 2, 6.0, 3.5, 2.5))  # stops at the line
    b.actor("truck", straight(1.75, -25.0, np.pi / 2, 6.5))  # crosses ahead
    # Turns right from the outer lane (radius 5 m, starting at x = 6.75 m).
    b.actor(
        "car",
        turning(55.0, 5.25, np.pi, 6.0, (55.0 - 6.75) / 6.0, -np.pi / 2, 5.0 * np.pi / 2 / 6.0),
    )
    b.actor("cyclist", straight(-16.0, -5.6, 0.0, 4.0))
    b.actor("person", waiting_then_walking(W + 3.0, -W - 1.0, np.pi / 2, 1.4, 6.0))
    # This pedestrian and the previous one pass each other on the crossing at t = 9.7 s.
    b.actor("person", waiting_then_walking(W + 2.2, W + 0.8, -np.pi / 2, 1.3, 1.0))
    b.actor("person", straight(20.0, -W - 1.5, np.pi, 1.2))  # on the sidewalk
    b.actor("person", straight(W + 1.5, W + 9.0, -np.pi / 2, 1.1))
    # The ego brakes to a stop before the crossing the pedestrians use.
    ego = stopping(-40.0, -1.75, 0.0, 5.0, 7.5, 2.0)
    return World("urban_crossing", b.static, b.actors, ego, VEHICLE_RIG, marks)


def highway_following(seed: int = 0) -> World:
    b = _Builder(seed)
    x0, x1 = -150.0, 500.0
    b.slab(x0, x1, -80, 80, 0.0, "terrain")
    b.slab(x0, x1, -11.0, 11.0, 0.01, "road")
    b.static += box((x1 - x0, 0.5, 0.9), ((x0 + x1) / 2, 0.0, 0.45), TRAINID["wall"])
    for x in np.arange(x0, x1, 40.0):
        b.pole(float(x), 0.0, 9.0)
    for x in np.arange(x0, x1, 18.0):
        for side in (1, -1):
            b.tree(float(x + b.rng.uniform(-4, 4)), side * float(b.rng.uniform(16, 30)))
    for x in np.arange(x0 + 50, x1, 120.0):
        b.sign(float(x), -12.0)
    marks = [LaneMark("x", y, x0, x1, True) for y in (-3.75, -7.25, 3.75, 7.25)]
    marks += [LaneMark("x", y, x0, x1, False, 0.2) for y in (-10.6, -0.6, 0.6, 10.6)]
    lane = {"left": -2.05, "mid": -5.5, "right": -9.0}
    b.actor("car", straight(30.0, lane["mid"], 0.0, 21.0))  # the lead car
    b.actor("truck", straight(45.0, lane["right"], 0.0, 17.0))
    b.actor("truck", straight(110.0, lane["right"], 0.0, 16.0))
    b.actor("car", straight(-25.0, lane["left"], 0.0, 28.0))  # overtakes the ego
    b.actor("bus", straight(70.0, lane["left"], 0.0, 20.0))
    b.actor("car", straight(260.0, 2.05, np.pi, 26.0))  # oncoming, beyond the barrier
    b.actor("car", straight(330.0, 5.5, np.pi, 24.0))
    b.actor("truck", straight(380.0, 9.0, np.pi, 20.0))
    ego = straight(0.0, lane["mid"], 0.0, 22.0)
    return World("highway_following", b.static, b.actors, ego, VEHICLE_RIG, marks)


def _warehouse(b: _Builder, passages: bool = False) -> list[LaneMark]:
    """The warehouse of the indoor scenarios: floor, walls, roof, rack rows along x (aisles
    at |y| < 2 and between rows) cut by a cross aisle at x = 30 and, with ``passages``, by
    two side passages (x 5.4-8.1 and 13.5-16.2). Returns the main aisle's lane marks."""
    x0, x1, y0, y1, h = -10.0, 70.0, -20.0, 20.0, 9.0
    b.slab(x0, x1, y0, y1, 0.0, "road")  # the drivable floor
    b.static += box((x1 - x0, 0.3, h), ((x0 + x1) / 2, y0, h / 2), TRAINID["building"])
    b.static += box((x1 - x0, 0.3, h), ((x0 + x1) / 2, y1, h / 2), TRAINID["building"])
    b.static += box((0.3, y1 - y0, h), (x1, 0.0, h / 2), TRAINID["building"])
    b.static += box((0.3, y1 - y0, h), (x0, 0.0, h / 2), TRAINID["building"])
    b.static += box((x1 - x0, y1 - y0, 0.3), ((x0 + x1) / 2, 0.0, h), TRAINID["building"])
    runs = ((0.0, 5.4), (8.1, 13.5), (16.2, 27.0)) if passages else ((0.0, 27.0),)
    for yc in (-3.0, 3.0, -9.0, 9.0, -15.0, 15.0):
        for xa, xb in (*runs, (33.0, 62.0)):
            for xu in np.arange(xa, xb + 0.1, 2.7):
                for dy in (-0.5, 0.5):
                    b.static += box((0.1, 0.1, 5.0), (float(xu), yc + dy, 2.5), TRAINID["wall"])
            for z in (0.15, 1.6, 3.1, 4.6):
                b.static += box((xb - xa, 1.1, 0.12), ((xa + xb) / 2, yc, z), TRAINID["wall"])
            for xc in np.arange(xa + 0.8, xb - 0.8, 1.35):  # boxes on the shelves
                for z in (0.21, 1.66, 3.16):
                    if b.rng.uniform() < 0.6:
                        size = float(b.rng.uniform(0.6, 1.2))
                        b.static += box(
                            (size, 0.9, size * 0.8),
                            (float(xc), yc, z + size * 0.4),
                            TRAINID["wall"],
                        )
    return [LaneMark("x", -1.6, x0, x1, False, 0.1), LaneMark("x", 1.6, x0, x1, False, 0.1)]


def indoor_aisle(seed: int = 0) -> World:
    b = _Builder(seed)
    marks = _warehouse(b)
    b.actor("person", straight(14.0, 0.9, np.pi, 1.0))  # walking towards the robot
    b.actor("person", straight(9.0, -0.8, 0.0, 0.8))  # walking ahead
    b.actor("forklift", straight(30.0, -14.0, np.pi / 2, 1.8))  # crosses the aisle
    b.actor("person", waiting_then_walking(31.0, 6.0, -np.pi / 2, 1.2, 2.0))
    b.actor("forklift", stopping(45.0, 0.0, np.pi, 1.5, 4.0, 1.0))
    ego = straight(0.0, 0.0, 0.0, 1.2)
    return World("indoor_aisle", b.static, b.actors, ego, ROBOT_RIG, marks, outdoor=False)


def indoor_inspection(seed: int = 0) -> World:
    """The warehouse scripted for the inspection zones of config/zones_indoor_inspection.yaml
    (main aisle: x 2-20, |y| < 1.6): one situation per rule, apart in time, seen by a robot
    standing at the start of the aisle. The exact event times come from the ground truth
    (``event_eval.truth_events``); those below are for seed 0 (sizes vary with the seed)."""
    b = _Builder(seed)
    marks = _warehouse(b, passages=True)
    # A person crosses the aisle through the near side passage (in the zone 2.1-4.7 s).
    b.actor("person", straight(6.2, -4.0, np.pi / 2, 1.2))
    # A forklift turns in from the cross aisle, drives down the aisle into the zone
    # (vehicle_in_zone from 2.9 s) and parks at x = 11.4 by 6.9 s (object_left once it has
    # stood for the rule's after_s: from 9.9 s).
    b.actor("forklift", stopping(27.0, 0.9, np.pi, 2.5, 5.6, 2.0))
    # Another pulls out of the far side passage behind it and stands across the aisle for
    # 2.5 s, leaving under 0.5 m free (aisle_blocked 6.5-11.4 s), then drives on.
    b.actor("forklift", stop_and_go(14.85, -6.2, np.pi / 2, 1.2, 4.0, 2.5, 1.2, 1.5))
    # A second person crosses back the other way while the first forklift stands parked
    # (in the zone from 10.1 s).
    b.actor("person", waiting_then_walking(7.3, 4.0, -np.pi / 2, 1.2, 7.8))
    # Background traffic in the cross aisle at x = 30, outside the zone.
    b.actor("forklift", straight(30.0, -14.0, np.pi / 2, 1.8))
    b.actor("person", waiting_then_walking(31.0, 6.0, -np.pi / 2, 1.2, 2.0))
    # The robot rolls up to the start of the aisle and stops to watch it.
    ego = stopping(-1.0, 0.0, 0.0, 0.8, 1.0, 0.8)
    return World("indoor_inspection", b.static, b.actors, ego, ROBOT_RIG, marks, outdoor=False)


SCENARIOS = {
    "urban_crossing": urban_crossing,
    "highway_following": highway_following,
    "indoor_aisle": indoor_aisle,
    "indoor_inspection": indoor_inspection,
}


def make_world(scenario: str, seed: int = 0) -> World:
    try:
        builder = SCENARIOS[scenario]
    except KeyError:
        raise ValueError(
            f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}"
        ) from None
    return builder(seed)
