"""Per-frame object stages after the filter: 3D objects for kept boxes, de-duplication,
radar association and the tracker's measurements.

Pure functions over the frame's arrays (boxes, the prepared lidar, radar returns in
base_link); indices refer to the frame's detections throughout, so each stage's result
can be joined with the others by box index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ros_pkg.camera_info import CameraModel
from .fusion3d import LidarFrame, Object3D, object_from_camera, object_from_lidar
from .projection import Projection
from .radar_assoc import RadarObjectEvidence, associate, associate_in_image
from .tracking import Measurement

DUPLICATE_OVERLAP = 0.7  # share of the smaller box covered by the larger
VEHICLES = frozenset({"car", "truck", "bus", "train"})
RIDER_PARTS = frozenset({"person", "bicycle", "motorcycle"})


def same_object_classes(a: str, b: str) -> bool:
    """Can boxes of classes ``a`` and ``b`` be one object seen twice? The same class; two
    vehicle classes (a truck called a bus); or a ``cyclist`` box and a person or bike box
    (the synthetic detector's rider class). A person and the bicycle they ride are two
    labelled objects (COCO, View-of-Delft), never duplicates of each other."""
    if a == b or (a in VEHICLES and b in VEHICLES):
        return True
    return "cyclist" in (a, b) and bool({a, b} & RIDER_PARTS)


RIDER_OVERLAP = 0.3  # share of the smaller box: a person box on a bike box ...
RIDER_DISTANCE_M = 1.5  # ... with 3D centres this close (when both have one)


def pair_riders(
    boxes: np.ndarray,
    classes: Sequence[str],
    kept: Sequence[int],
    objects: dict[int, Object3D],
) -> dict[int, int]:
    """Kept person boxes riding (or standing at) a kept bicycle/motorcycle box: person
    index -> bike index. A pair overlaps (30 % of the smaller box), the person's box is
    no lower than the bike's (feet at or above the wheels' contact: its bottom within the
    lower half of the bike box or above), and, where both have 3D objects, their centres
    are within 1.5 m. Greedy by overlap, each box in at most one pair. Both 2D boxes stay
    reported (person and bicycle are both labelled objects); in 3D the pair is one
    cyclist (``rider_object``)."""
    people = [i for i in kept if classes[i] == "person"]
    bikes = [i for i in kept if classes[i] in ("bicycle", "motorcycle")]
    candidates = []
    for p in people:
        for b in bikes:
            overlap = _overlap(boxes[p], boxes[b])
            bike_h = boxes[b][3] - boxes[b][1]
            if overlap < RIDER_OVERLAP or boxes[p][3] > boxes[b][3] + 0.25 * bike_h:
                continue
            if p in objects and b in objects:
                gap = np.hypot(*(objects[p].center[:2] - objects[b].center[:2]))
                if gap > RIDER_DISTANCE_M:
                    continue
            candidates.append((-overlap, p, b))
    pairs: dict[int, int] = {}
    for _, p, b in sorted(candidates):
        if p not in pairs and b not in pairs.values():
            pairs[p] = b
    return pairs


def rider_object(person: Object3D, bike: Object3D) -> Object3D:
    """One cyclist from a rider's and a bike's 3D objects: the bike's footprint (centre,
    length, width, yaw: the rider sits over it), the vertical extent of both."""
    bottom = min(person.center[2] - person.size[2] / 2, bike.center[2] - bike.size[2] / 2)
    top = max(person.center[2] + person.size[2] / 2, bike.center[2] + bike.size[2] / 2)
    centre = np.array([bike.center[0], bike.center[1], (bottom + top) / 2])
    size = np.array([max(bike.size[0], person.size[0]), max(bike.size[1], person.size[1]),
                     top - bottom])  # fmt: skip
    source = "lidar" if "lidar" in (person.source, bike.source) else bike.source
    fit = bike.fit if bike.source == source else person.fit
    return Object3D(centre, size, bike.yaw, source, person.points + bike.points, fit=fit)


DUPLICATE_DISTANCE_M = 1.0  # bird's-eye distance between 3D centres ...
DUPLICATE_OVERLAP_3D = 0.3  # ... with at least this much box overlap


def labels_under_points(lidar: LidarFrame, labels: np.ndarray) -> np.ndarray:
    """Per projected lidar point: the segmentation's class id under it (once per frame;
    ``lut[labels_under_points(...)] > 0`` is then each box's mask agreement)."""
    uv = lidar.projection.uv
    h, w = labels.shape
    u = np.clip(uv[:, 0].astype(int), 0, w - 1)
    v = np.clip(uv[:, 1].astype(int), 0, h - 1)
    return labels[v, u]


def build_objects(
    boxes: np.ndarray,
    classes: Sequence[str],
    kept: Sequence[int],
    lidar: LidarFrame | None,
    camera: CameraModel | None,
    T_base_cam: np.ndarray | None,
    mask_ok: dict[int, np.ndarray | None],
    dbscan_eps: float,
    vehicle_fit: str = "l_shape",
) -> dict[int, Object3D]:
    """A 3D object per kept box: from its lidar cluster, else cast onto the ground from
    the camera; boxes with neither are left out. ``vehicle_fit``: ``fusion.vehicle_fit``."""
    objects: dict[int, Object3D] = {}
    for i in kept:
        obj = None
        if lidar is not None:
            obj = object_from_lidar(
                boxes[i], classes[i], lidar, mask_ok.get(i), eps=dbscan_eps,
                vehicle_fit=vehicle_fit,
            )  # fmt: skip
        if obj is None and camera is not None and T_base_cam is not None:
            ground = lidar.ground if lidar is not None else None
            obj = object_from_camera(boxes[i], classes[i], camera, T_base_cam, ground)
        if obj is not None:
            objects[i] = obj
    return objects


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / max(smaller, 1e-9))


def deduplicate(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    kept: Sequence[int],
    objects: dict[int, Object3D],
) -> tuple[list[int], dict[int, int]]:
    """Two kept boxes of classes that can be one object (``same_object_classes``) that
    mostly overlap (70 % of the smaller box), or overlap by 30 % with 3D centres within 1 m, are one
    object seen twice (a rider called both person and cyclist, a truck also called a bus, a
    box from a tile and one from the full frame): the higher score stays.
    Returns the boxes that stay and, for each dropped one, the box it duplicates."""
    order = sorted(kept, key=lambda i: -float(scores[i]))
    chosen: list[int] = []
    duplicates: dict[int, int] = {}
    for i in order:
        obj = objects.get(i)
        twin = next(
            (
                j
                for j in chosen
                if same_object_classes(classes[i], classes[j])
                and (
                    _overlap(boxes[i], boxes[j]) > DUPLICATE_OVERLAP
                    or (
                        obj is not None
                        and j in objects
                        and np.hypot(*(objects[j].center[:2] - obj.center[:2]))
                        < DUPLICATE_DISTANCE_M
                        # two people walking side by side are < 1 m apart: the boxes must
                        # overlap too (View-of-Delft frame 01047 lost a pedestrian so)
                        and _overlap(boxes[i], boxes[j]) > DUPLICATE_OVERLAP_3D
                    )
                )
            ),
            None,
        )
        if twin is None:
            chosen.append(i)
        else:
            duplicates[i] = twin
    return sorted(chosen), duplicates


def associate_radar(
    boxes: np.ndarray,
    kept: Sequence[int],
    objects: dict[int, Object3D],
    radar_xyz: np.ndarray,
    radial_velocity: np.ndarray,
    sensor_xy: np.ndarray,
    T_cam_base: np.ndarray | None,
    camera: CameraModel | None,
    gate_m: float,
    projection: Projection | None = None,
) -> dict[int, RadarObjectEvidence]:
    """Radar returns per kept object: bird's-eye gating for lidar objects, image gating
    for camera-only ones (their 3D position is too uncertain for a metric gate).
    ``projection``: the frame's projection of the returns, shared with the filter."""
    if not objects:
        return {}
    lidar_ids = [i for i in kept if i in objects and objects[i].source == "lidar"]
    cam_ids = [i for i in kept if i in objects and objects[i].source == "camera_only"]
    result: dict[int, RadarObjectEvidence] = {}
    if lidar_ids:
        ev = associate(
            radar_xyz,
            radial_velocity,
            np.array([objects[i].center for i in lidar_ids]),
            np.array([objects[i].size for i in lidar_ids]),
            np.array([objects[i].yaw for i in lidar_ids]),
            sensor_xy,
            gate_m=gate_m,
        )
        result.update(zip(lidar_ids, ev, strict=True))
    if cam_ids and T_cam_base is not None and camera is not None:
        ev = associate_in_image(
            radar_xyz,
            radial_velocity,
            boxes[cam_ids],
            np.array([objects[i].center for i in cam_ids]),
            T_cam_base,
            camera,
            sensor_xy,
            projection,
        )
        result.update(zip(cam_ids, ev, strict=True))
    return result


def measurements(
    ids: Sequence[int],
    objects: dict[int, Object3D],
    classes: Sequence[str],
    scores: np.ndarray,
    radar: dict[int, RadarObjectEvidence],
    T_track_base: np.ndarray,
) -> list[Measurement]:
    """Tracker measurements in the tracking frame (``T_track_base``: base_link in it),
    with the radar's radial velocity along the line of sight where one was associated.
    An object placed by an older sweep and not carried to the stamp (``fusion.carry``) was
    seen ``lidar_age_ms`` before the frame: its measurement says so."""
    out = []
    for i in ids:
        obj = objects[i]
        xy = (T_track_base[:3, :3] @ obj.center + T_track_base[:3, 3])[:2]
        ev = radar.get(i)
        los = None
        vr = float("nan")
        if ev is not None and np.isfinite(ev.radial_velocity):
            u = obj.center[:2] / max(np.linalg.norm(obj.center[:2]), 1e-6)
            los = T_track_base[:2, :2] @ u
            vr = ev.radial_velocity
        age = 0.0 if obj.carried_by_track else obj.lidar_age_ms / 1e3
        out.append(Measurement(xy, classes[i], float(scores[i]), obj.source, vr, los, i, age))
    return out
