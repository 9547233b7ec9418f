"""The rclpy node: subscriptions, a non-blocking worker, publishers, parameters.

The only module in the project that imports rclpy. Callbacks only enqueue: a worker
thread runs the ROS-free :class:`~multimodal_perception.pipeline.Pipeline` and publishes
its outputs. The queue is bounded and latest-wins: when the worker lags, the oldest
camera frame goes first, and every message dropped there is counted per topic in the
pipeline's accounting (reason ``worker_queue_overflow``) and on ``/diagnostics``.

Parameters are declared from the shared schema (``multimodal_perception.config``) with
descriptors and ranges; a bad value is refused with a message. Filter thresholds, the
detection threshold, description language and output switches change at run time;
topics and models need a restart. tf and tf_static come through tf2_ros.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from tf2_ros import Buffer, TransformListener
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..config import PARAMETERS, ParameterError, Parameters, validate
from ..pipeline import Output, Pipeline
from .factory import RclpyFactory
from .tf2_adapter import Tf2Transforms

QUESTION = "<question>"  # queue key of questions (std_msgs/String on ~/question)
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
    "detections_2d": Detection2DArray,
    "rejected_2d": Detection2DArray,
    "objects_3d": Detection3DArray,
    "scene": String,
    "scene_text": String,
    "markers": MarkerArray,
    "segmentation": Image,
    "debug_image": Image,
}


def _descriptor(spec: Any) -> ParameterDescriptor:
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


class PerceptionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("multimodal_perception", **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self.declare_parameter(
            "qos.reliability",
            "best_effort",
            ParameterDescriptor(
                description="Sensor subscriptions: best_effort (SensorData) or reliable",
                read_only=True,
            ),
        )
        self.declare_parameter(
            "qos.depth",
            5,
            ParameterDescriptor(
                description="Sensor subscription queue depth",
                read_only=True,
                integer_range=[IntegerRange(from_value=1, to_value=100, step=1)],
            ),
        )
        self.declare_parameter(
            "worker.queue_depth",
            30,
            ParameterDescriptor(
                description="Messages waiting for the worker before the oldest frame is dropped",
                read_only=True,
                integer_range=[IntegerRange(from_value=2, to_value=1000, step=1)],
            ),
        )
        values = {}
        for spec in PARAMETERS:
            value = self.get_parameter(spec.name).value
            try:
                values[spec.name] = validate(spec.name, value)
            except ParameterError as exc:
                self.get_logger().fatal(str(exc))
                raise
        self.params = Parameters(values)
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)
        self.pipeline = Pipeline(self.params, RclpyFactory(), Tf2Transforms(self.tf_buffer))
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._depth = int(self.get_parameter("worker.queue_depth").value)
        self._lock = threading.Condition()
        self._stop = False
        self._publishers: dict[str, Any] = {}
        self._make_publishers()
        self._make_subscriptions()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Questions go through the worker queue (the pipeline has one user); captions and
        # answers from the multimodal worker are collected by a timer, off the sensor path.
        self.create_subscription(String, "question", self._callback(QUESTION), 10)
        self.create_timer(0.1, self._poll_multimodal)
        self._worker = threading.Thread(target=self._work, name="mmp-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"detector {self.pipeline.detector.manifest.name} on "
            f"{self.pipeline.detector.backend.provider}, segmenter "
            f"{self.pipeline.segmenter.manifest.name if self.pipeline.segmenter else 'none'}"
            + (" (project-trained embedded defaults)" if self.pipeline.embedded_default else "")
        )

    # -- wiring --------------------------------------------------------------------------
    def _sensor_qos(self) -> QoSProfile:
        reliability = self.get_parameter("qos.reliability").value
        depth = int(self.get_parameter("qos.depth").value)
        if reliability == "reliable":
            return QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE
            )
        qos = qos_profile_sensor_data
        return QoSProfile(
            history=qos.history, depth=depth, reliability=qos.reliability, durability=qos.durability
        )

    def _make_subscriptions(self) -> None:
        p = self.params
        qos = self._sensor_qos()
        radar_type = self._radar_type()
        subs = [
            (p["topics.camera"], Image),
            (p["topics.camera_compressed"], CompressedImage),
            (p["topics.camera_info"], CameraInfo),
            (p["topics.lidar"], PointCloud2),
            (p["topics.radar"], radar_type),
        ]
        self._subscriptions_ = [
            self.create_subscription(msg_type, topic, self._callback(topic), qos)
            for topic, msg_type in subs
        ]

    def _radar_type(self) -> Any:
        # A radar topic may carry PointCloud2 (default), RadarScan or RadarTracks.
        kind = self.declare_parameter(
            "topics.radar_type",
            "PointCloud2",
            ParameterDescriptor(
                description="Radar message type: PointCloud2, RadarScan or RadarTracks",
                read_only=True,
            ),
        ).value
        if kind == "RadarScan":
            from radar_msgs.msg import RadarScan

            return RadarScan
        if kind == "RadarTracks":
            from radar_msgs.msg import RadarTracks

            return RadarTracks
        return PointCloud2

    def _make_publishers(self) -> None:
        for name, msg_type in OUTPUT_TYPES.items():
            self._publishers[name] = self.create_publisher(msg_type, name, 10)
        latched = QoSProfile(
            depth=1,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            reliability=ReliabilityPolicy.RELIABLE,
        )
        self._publishers["label_info"] = self.create_publisher(LabelInfo, "label_info", latched)
        self._publishers["/diagnostics"] = self.create_publisher(
            DiagnosticArray, "/diagnostics", 10
        )

    def _callback(self, topic: str):
        def enqueue(msg: Any) -> None:
            with self._lock:
                if len(self._queue) >= self._depth:
                    self._drop_one()
                self._queue.append((topic, msg))
                self._lock.notify()

        return enqueue

    def _drop_one(self) -> None:
        """Latest wins: drop the oldest camera frame waiting, else the oldest message."""
        camera_topics = {self.params["topics.camera"], self.params["topics.camera_compressed"]}
        for i, (topic, _) in enumerate(self._queue):
            if topic in camera_topics:
                del self._queue[i]
                break
        else:
            topic, _ = self._queue.popleft()
        self.pipeline.count_dropped(topic, "worker_queue_overflow")

    # -- work ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                topic, msg = self._queue.popleft()
            try:
                if topic == QUESTION:
                    outputs = self.pipeline.ask(str(msg.data))
                else:
                    outputs = self.pipeline.process(topic, msg)
            except Exception as exc:
                self.get_logger().error(f"{topic}: {exc}")
                continue
            self._publish(outputs)

    def _poll_multimodal(self) -> None:
        self._publish(self.pipeline.poll())

    def _publish(self, outputs: list[Output]) -> None:
        for o in outputs:
            pub = self._publishers.get(o.topic)
            if pub is not None:
                pub.publish(o.msg)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name in ("use_sim_time",):
                continue
            if not param.name.startswith(RUNTIME_PREFIXES):
                return SetParametersResult(successful=False, reason=f"{param.name} needs a restart")
            try:
                updates[param.name] = validate(param.name, param.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if updates:
            with self._lock:
                self.pipeline.update_parameters(updates)
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._worker.join(timeout=2.0)
        self.pipeline.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = PerceptionNode()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
