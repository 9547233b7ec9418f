"""Output messages: vision_msgs 4.x detections and labels, markers, strings, diagnostics.

Builders take plain numpy arrays and strings (the ROS-free core's results) and a
:class:`MessageFactory`, so the node publishes and the replay job records the very same
messages. Readers turn detection arrays back into arrays for evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .factory import MessageFactory
from .stamps import make_header, stamp_to_ns

DETECTION2D_ARRAY = "vision_msgs/msg/Detection2DArray"
DETECTION3D_ARRAY = "vision_msgs/msg/Detection3DArray"

# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR, STALE = 0, 1, 2, 3


def _pose(factory: MessageFactory, xyz: Sequence[float], yaw: float) -> Any:
    half = 0.5 * float(yaw)
    return factory.make(
        "geometry_msgs/msg/Pose",
        position=factory.make(
            "geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])
        ),
        orientation=factory.make(
            "geometry_msgs/msg/Quaternion",
            x=0.0,
            y=0.0,
            z=float(np.sin(half)),
            w=float(np.cos(half)),
        ),
    )


def _hypothesis(factory: MessageFactory, class_id: str, score: float, pose: Any) -> Any:
    return factory.make(
        "vision_msgs/msg/ObjectHypothesisWithPose",
        hypothesis=factory.make(
            "vision_msgs/msg/ObjectHypothesis", class_id=str(class_id), score=float(score)
        ),
        pose=factory.make(
            "geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)
        ),
    )


def detection2d_array(
    factory: MessageFactory,
    *,
    stamp_ns: int,
    frame_id: str,
    boxes_xyxy: np.ndarray,
    class_ids: Sequence[str],
    scores: Sequence[float],
    ids: Sequence[str] | None = None,
) -> Any:
    """Axis-aligned pixel boxes (x1, y1, x2, y2) as a vision_msgs/Detection2DArray."""
    header = make_header(factory, stamp_ns, frame_id)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    ids = list(ids) if ids is not None else [""] * len(boxes)
    detections = []
    for box, class_id, score, det_id in zip(boxes, class_ids, scores, ids, strict=True):
        center = factory.make(
            "vision_msgs/msg/Pose2D",
            position=factory.make(
                "vision_msgs/msg/Point2D",
                x=float(box[0] + box[2]) / 2,
                y=float(box[1] + box[3]) / 2,
            ),
            theta=0.0,
        )
        bbox = factory.make(
            "vision_msgs/msg/BoundingBox2D",
            center=center,
            size_x=float(box[2] - box[0]),
            size_y=float(box[3] - box[1]),
        )
        empty_pose = _pose(factory, (0.0, 0.0, 0.0), 0.0)
        detections.append(
            factory.make(
                "vision_msgs/msg/Detection2D",
                header=header,
                results=[_hypothesis(factory, class_id, score, empty_pose)],
                bbox=bbox,
                id=str(det_id),
            )
        )
    return factory.make(DETECTION2D_ARRAY, header=header, detections=detections)


def detection3d_array(
    factory: MessageFactory,
    *,
    stamp_ns: int,
    frame_id: str,
    centers: np.ndarray,
    sizes: np.ndarray,
    yaws: np.ndarray,
    class_ids: Sequence[str],
    scores: Sequence[float],
    ids: Sequence[str] | None = None,
) -> Any:
    """Oriented 3D boxes (centre, size l/w/h along x/y/z, yaw about z) as Detection3DArray."""
    header = make_header(factory, stamp_ns, frame_id)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 3)
    ids = list(ids) if ids is not None else [""] * len(centers)
    detections = []
    for c, s, yaw, class_id, score, det_id in zip(
        centers, sizes, np.asarray(yaws).reshape(-1), class_ids, scores, ids, strict=True
    ):
        pose = _pose(factory, c, float(yaw))
        bbox = factory.make(
            "vision_msgs/msg/BoundingBox3D",
            center=pose,
            size=factory.make(
                "geometry_msgs/msg/Vector3", x=float(s[0]), y=float(s[1]), z=float(s[2])
            ),
        )
        detections.append(
            factory.make(
                "vision_msgs/msg/Detection3D",
                header=header,
                results=[_hypothesis(factory, class_id, score, pose)],
                bbox=bbox,
                id=str(det_id),
            )
        )
    return factory.make(DETECTION3D_ARRAY, header=header, detections=detections)


@dataclass(frozen=True)
class Detections2D:
    stamp_ns: int
    frame_id: str
    boxes_xyxy: np.ndarray
    class_ids: list[str]
    scores: np.ndarray
    ids: list[str]


def detection2d_array_to_arrays(msg: Any) -> Detections2D:
    boxes, classes, scores, ids = [], [], [], []
    for det in msg.detections:
        b = det.bbox
        cx, cy = b.center.position.x, b.center.position.y
        boxes.append((cx - b.size_x / 2, cy - b.size_y / 2, cx + b.size_x / 2, cy + b.size_y / 2))
        best = max(det.results, key=lambda r: r.hypothesis.score, default=None)
        classes.append(best.hypothesis.class_id if best else "")
        scores.append(best.hypothesis.score if best else 0.0)
        ids.append(str(det.id))
    return Detections2D(
        stamp_to_ns(msg.header.stamp),
        str(msg.header.frame_id),
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        classes,
        np.array(scores, dtype=np.float64),
        ids,
    )


def label_info(
    factory: MessageFactory,
    *,
    stamp_ns: int,
    frame_id: str,
    class_names: Sequence[str],
    threshold: float = 0.0,
) -> Any:
    class_map = [
        factory.make("vision_msgs/msg/VisionClass", class_id=i, class_name=str(name))
        for i, name in enumerate(class_names)
    ]
    return factory.make(
        "vision_msgs/msg/LabelInfo",
        header=make_header(factory, stamp_ns, frame_id),
        class_map=class_map,
        threshold=float(threshold),
    )


def string_msg(factory: MessageFactory, text: str) -> Any:
    return factory.make("std_msgs/msg/String", data=str(text))


def _color(factory: MessageFactory, rgba: Sequence[float]) -> Any:
    r, g, b, a = (float(v) for v in rgba)
    return factory.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=a)


def _marker(factory: MessageFactory, **fields: Any) -> Any:
    defaults: dict[str, Any] = {
        "ns": "",
        "id": 0,
        "type": 1,
        "action": 0,
        "pose": _pose(factory, (0.0, 0.0, 0.0), 0.0),
        "scale": factory.make("geometry_msgs/msg/Vector3", x=1.0, y=1.0, z=1.0),
        "color": _color(factory, (1.0, 1.0, 1.0, 1.0)),
        "lifetime": factory.make("builtin_interfaces/msg/Duration", sec=0, nanosec=0),
        "frame_locked": False,
        "points": [],
        "colors": [],
        "texture_resource": "",
        "texture": factory.make(
            "sensor_msgs/msg/CompressedImage",
            header=make_header(factory, 0, ""),
            format="",
            data=np.zeros(0, np.uint8),
        ),
        "uv_coordinates": [],
        "text": "",
        "mesh_resource": "",
        "mesh_file": factory.make(
            "visualization_msgs/msg/MeshFile", filename="", data=np.zeros(0, np.uint8)
        ),
        "mesh_use_embedded_materials": False,
    }
    defaults.update(fields)
    return factory.make("visualization_msgs/msg/Marker", **defaults)


def box_markers(
    factory: MessageFactory,
    *,
    stamp_ns: int,
    frame_id: str,
    centers: np.ndarray,
    sizes: np.ndarray,
    yaws: np.ndarray,
    labels: Sequence[str],
    colors: Sequence[Sequence[float]] | None = None,
    namespace: str = "objects",
) -> Any:
    """One translucent CUBE and one TEXT marker per object, after a DELETEALL."""
    header = make_header(factory, stamp_ns, frame_id)
    markers = [_marker(factory, header=header, ns=namespace, action=3)]  # DELETEALL
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 3)
    yaws = np.asarray(yaws, dtype=np.float64).reshape(-1)
    for i, (c, s, yaw, label) in enumerate(zip(centers, sizes, yaws, labels, strict=True)):
        rgba = colors[i] if colors is not None else (0.1, 0.8, 0.2, 0.5)
        scale = factory.make(
            "geometry_msgs/msg/Vector3", x=float(s[0]), y=float(s[1]), z=float(s[2])
        )
        markers.append(
            _marker(
                factory,
                header=header,
                ns=namespace,
                id=2 * i,
                type=1,
                pose=_pose(factory, c, yaw),
                scale=scale,
                color=_color(factory, rgba),
            )
        )
        top = (c[0], c[1], c[2] + s[2] / 2 + 0.3)
        markers.append(
            _marker(
                factory,
                header=header,
                ns=namespace,
                id=2 * i + 1,
                type=9,
                text=str(label),
                pose=_pose(factory, top, 0.0),
                scale=factory.make("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=0.6),
                color=_color(factory, (1.0, 1.0, 1.0, 1.0)),
            )
        )
    return factory.make("visualization_msgs/msg/MarkerArray", markers=markers)


@dataclass
class StatusReport:
    """One diagnostic_msgs/DiagnosticStatus in plain data."""

    name: str
    level: int = OK
    message: str = ""
    hardware_id: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


def diagnostic_array(
    factory: MessageFactory, *, stamp_ns: int, statuses: Sequence[StatusReport]
) -> Any:
    status_msgs = [
        factory.make(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=int(s.level),
            name=s.name,
            message=s.message,
            hardware_id=s.hardware_id,
            values=[
                factory.make("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v))
                for k, v in s.values.items()
            ],
        )
        for s in statuses
    ]
    return factory.make(
        "diagnostic_msgs/msg/DiagnosticArray",
        header=make_header(factory, stamp_ns, ""),
        status=status_msgs,
    )
