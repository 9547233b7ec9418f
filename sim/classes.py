"""Semantic classes of the synthetic world: Cityscapes trainIds and actor kinds.

Per-pixel labels use the 19 Cityscapes trainIds (255 = unlabelled) so the synthetic
ground truth and the real Cityscapes segmenter speak the same language. Actor kinds
carry the detection class names (COCO-style) used by the project-trained detector.
"""

from __future__ import annotations

from dataclasses import dataclass

CITYSCAPES_TRAINIDS = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
TRAINID = {name: i for i, name in enumerate(CITYSCAPES_TRAINIDS)}
IGNORE = 255

# Base albedo (BGR, 0..1) per trainId for the shader; actors override per instance.
CLASS_ALBEDO_BGR = {
    TRAINID["road"]: (0.33, 0.33, 0.34),
    TRAINID["sidewalk"]: (0.62, 0.62, 0.66),
    TRAINID["building"]: (0.42, 0.50, 0.62),
    TRAINID["wall"]: (0.60, 0.60, 0.58),
    TRAINID["fence"]: (0.25, 0.45, 0.65),
    TRAINID["pole"]: (0.45, 0.45, 0.45),
    TRAINID["traffic sign"]: (0.10, 0.75, 0.95),
    TRAINID["vegetation"]: (0.15, 0.52, 0.22),
    TRAINID["terrain"]: (0.30, 0.60, 0.52),
    TRAINID["sky"]: (0.92, 0.78, 0.62),
    TRAINID["person"]: (0.35, 0.30, 0.75),
    TRAINID["rider"]: (0.20, 0.20, 0.80),
    TRAINID["car"]: (0.70, 0.20, 0.15),
    TRAINID["truck"]: (0.20, 0.55, 0.80),
    TRAINID["bus"]: (0.15, 0.75, 0.90),
    TRAINID["bicycle"]: (0.10, 0.10, 0.10),
}

# Lidar reflectivity (0..1) per trainId, for the intensity channel.
CLASS_REFLECTIVITY = {
    TRAINID["road"]: 0.12,
    TRAINID["sidewalk"]: 0.25,
    TRAINID["building"]: 0.35,
    TRAINID["wall"]: 0.4,
    TRAINID["fence"]: 0.5,
    TRAINID["pole"]: 0.45,
    TRAINID["traffic sign"]: 0.95,
    TRAINID["vegetation"]: 0.3,
    TRAINID["terrain"]: 0.2,
    TRAINID["person"]: 0.3,
    TRAINID["rider"]: 0.3,
    TRAINID["car"]: 0.6,
    TRAINID["truck"]: 0.6,
    TRAINID["bus"]: 0.6,
    TRAINID["bicycle"]: 0.4,
}

# Radar cross-section (dBsm) typical of each kind at 77 GHz.
ACTOR_RCS_DBSM = {
    "car": 10.0,
    "truck": 20.0,
    "bus": 20.0,
    "person": -5.0,
    "cyclist": 0.0,
    "forklift": 12.0,
}


@dataclass(frozen=True)
class ActorKind:
    """A kind of actor: its detection class and nominal size range (l, w, h in metres)."""

    name: str
    detection_class: str
    size_min: tuple[float, float, float]
    size_max: tuple[float, float, float]


ACTOR_KINDS = {
    "car": ActorKind("car", "car", (3.9, 1.7, 1.4), (4.8, 1.95, 1.65)),
    "truck": ActorKind("truck", "truck", (7.0, 2.4, 3.0), (9.0, 2.55, 3.6)),
    "bus": ActorKind("bus", "bus", (10.5, 2.5, 3.0), (12.0, 2.55, 3.3)),
    "person": ActorKind("person", "person", (0.45, 0.5, 1.6), (0.6, 0.65, 1.9)),
    "cyclist": ActorKind("cyclist", "cyclist", (1.7, 0.6, 1.7), (1.85, 0.7, 1.85)),
    "forklift": ActorKind("forklift", "truck", (2.8, 1.1, 2.1), (3.2, 1.25, 2.3)),
}

# Detection classes of the synthetic world (order = class index of the trained detector).
DETECTION_CLASSES = ("car", "truck", "bus", "person", "cyclist")
