"""The node's ROS interface: its outputs and their types, which parameters may change at
run time, and the descriptors (ranges, choices, read-only) parameters are declared with."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

RUNTIME_PREFIXES = (
    "filter.",
    "detector.score_threshold",
    "description.",
    "output.",
    "tracking.",
    "diagnostics.",
)

OUTPUT_TYPES = {
    "scene_caption": String,
    "answer": String,
    "query_result": String,
    "detections_2d": Detection2DArray,
    "rejected_2d": Detection2DArray,
    "objects_3d": Detection3DArray,
    "scene": String,
    "scene_text": String,
    "markers": MarkerArray,
    "segmentation": Image,
    "debug_image": Image,
    "events": String,
    "findings": String,
    "calibration_health": String,
}
# What a rig camera publishes under its name (the merged scene and 3D objects, events,
# answers and captions stay at the top).
PER_CAMERA_OUTPUTS = (
    "detections_2d",
    "rejected_2d",
    "objects_3d",
    "scene",
    "scene_text",
    "markers",
    "segmentation",
    "debug_image",
)
LATCHED = QoSProfile(
    depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
)


def descriptor(spec: Any) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description)
    if spec.kind is float and spec.min is not None:
        d.floating_point_range = [
            FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)
        ]
    elif spec.kind is int and spec.min is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    d.read_only = not spec.name.startswith(RUNTIME_PREFIXES)
    return d
