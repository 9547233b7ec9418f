"""The rclpy node: wiring only (QoS, subscriptions, publishers, parameters, timers).

The only module in the project that imports rclpy. Everything between a message in and
a message out is the session driver's (``multimodal_perception.pipeline.Pipeline``):

- subscription callbacks (executor thread) call ``Pipeline.ingest``: decode, count,
  synchronise. tf is state, applied there and never queued;
- a complete frame goes to a latest-wins slot of depth one; a frame still waiting when
  a newer one completes is counted ``superseded_by_newer_frame``;
- the compute thread runs ``Pipeline.run`` on the slot's frame and publishes its outputs;
- timers: the ROS clock advances the synchroniser (so the last frame is not left waiting
  for a message that never comes), ``/diagnostics`` every ``diagnostics.period_s``, and
  the multimodal worker's answers.

tf comes from tf2_ros where it is installed; elsewhere (ROS 2 from PyPI wheels) the node
subscribes ``/tf`` and ``/tf_static`` (transient local) into the project's own buffer,
with the same lookup semantics. SIGINT and SIGTERM end the node cleanly: pending frames
are processed and published, the final accounting is printed, exit code 0.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
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
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..config import PARAMETERS, ParameterError, Parameters, camera_specs, validate
from ..fusion.sync import SyncGroup
from ..latency import FrameLatency
from ..pipeline import Output, Pipeline
from ..scheduling import LatestSlot
from . import outputs as out
from .factory import RclpyFactory

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


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class PerceptionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("multimodal_perception", **kwargs)
        self.params = self._declare_parameters()
        transforms = self._tf_source()
        self.pipeline = Pipeline(self.params, RclpyFactory(), transforms)
        self.pipeline.diagnostics_on_frames = False  # a timer publishes them
        self.latency = FrameLatency()
        self.frames_published = 0
        self._slot: LatestSlot[SyncGroup] = LatestSlot()
        self._outputs = self._make_publishers()
        self._make_subscriptions(own_tf=transforms is None)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_subscription(String, "question", self._on_question, 10)
        self.create_subscription(String, "query", self._on_query, 10)
        timeout_s = max(self.params["sync.timeout_ms"] / 1e3, 0.02)
        self.create_timer(timeout_s / 2, self._on_clock_tick)
        self.create_timer(self.params["diagnostics.period_s"], self._publish_diagnostics)
        self.create_timer(0.1, lambda: self._publish(self.pipeline.poll()))
        self._compute = threading.Thread(target=self._compute_loop, name="mmp-compute")
        self._compute.start()
        models = self.pipeline.models.describe()
        self.get_logger().info(
            f"detector {models['detector']} on {self.pipeline.detector.backend.provider}, "
            f"segmenter {models['segmenter']}"
            + (" (project-trained embedded defaults)" if models["embedded_default"] else "")
            + ("; tf from tf2_ros" if transforms is not None else "; tf from /tf, /tf_static")
        )

    # -- wiring --------------------------------------------------------------------------
    def _declare_parameters(self) -> Parameters:
        values = {}
        specs = list(PARAMETERS)
        while specs:
            spec = specs.pop(0)
            try:
                declared = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except InvalidParameterTypeException as exc:  # `1` in a YAML for a float, say
                raise ParameterError(f"{exc} (write {spec.name} like {spec.default!r})") from None
            value = declared.value
            try:
                values[spec.name] = validate(spec.name, value)
            except ParameterError as exc:
                self.get_logger().fatal(str(exc))
                raise
            if spec.name == "cameras.names":  # each rig camera's own overrides
                specs += [c for n in value.split(",") if n.strip() for c in camera_specs(n.strip())]
        return Parameters(values)

    def _tf_source(self) -> Any | None:
        """tf2_ros where installed; None: the node feeds /tf into the pipeline's buffer."""
        try:
            from tf2_ros import Buffer, TransformListener
        except ImportError:
            return None
        from .tf2_adapter import Tf2Transforms

        buffer = Buffer()
        self._tf_listener = TransformListener(buffer, self)
        return Tf2Transforms(buffer)

    def _sensor_qos(self) -> QoSProfile:
        depth = int(self.params["qos.depth"])
        if self.params["qos.reliability"] == "reliable":
            return QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE
            )
        qos = qos_profile_sensor_data
        return QoSProfile(
            history=qos.history, depth=depth, reliability=qos.reliability, durability=qos.durability
        )

    def _radar_type(self) -> Any:
        kind = self.params["topics.radar_type"]
        if kind == "PointCloud2":
            return PointCloud2
        import radar_msgs.msg

        return getattr(radar_msgs.msg, kind)

    def _make_subscriptions(self, own_tf: bool) -> None:
        p = self.params
        qos = self._sensor_qos()
        cameras = self.pipeline.cameras  # one, or every camera of the rig
        subs = [
            *((c.image_topic, Image, qos) for c in cameras),
            *((c.compressed_topic, CompressedImage, qos) for c in cameras),
            *((c.info_topic, CameraInfo, qos) for c in cameras),
            (p["topics.lidar"], PointCloud2, qos),
            (p["topics.radar"], self._radar_type(), qos),
        ]
        if own_tf:
            from tf2_msgs.msg import TFMessage

            tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            static_qos = QoSProfile(
                depth=100,
                durability=DurabilityPolicy.TRANSIENT_LOCAL,
                reliability=ReliabilityPolicy.RELIABLE,
            )
            subs += [
                (p["topics.tf"], TFMessage, tf_qos),
                (p["topics.tf_static"], TFMessage, static_qos),
            ]
        images = {t for c in cameras for t in (c.image_topic, c.compressed_topic)}
        self._subscriptions_in = [
            self.create_subscription(t, topic, self._callback(topic, topic in images), q)
            for topic, t, q in subs
        ]

    def _make_publishers(self) -> dict[str, Any]:
        pubs = {name: self.create_publisher(t, name, 10) for name, t in OUTPUT_TYPES.items()}
        if self.pipeline.rig:  # each camera's own outputs under its name
            for camera in self.pipeline.cameras:
                for name in PER_CAMERA_OUTPUTS:
                    topic = camera.output(name)
                    pubs[topic] = self.create_publisher(OUTPUT_TYPES[name], topic, 10)
        pubs["label_info"] = self.create_publisher(LabelInfo, "label_info", LATCHED)
        pubs["/diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        return pubs

    # -- callbacks (executor thread) -----------------------------------------------------
    def _callback(self, topic: str, camera: bool):
        def on_message(msg: Any) -> None:
            self.on_message(topic, msg, camera)

        return on_message

    def on_message(self, topic: str, msg: Any, camera: bool = False) -> None:
        if camera:  # a malformed stamp is ingest's to count, not the meter's
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                self.latency.mark(_stamp_ns(msg), "received")
        for group in self.pipeline.ingest(topic, msg):
            self._hand_over(group)

    def _hand_over(self, group: SyncGroup) -> None:
        self.latency.mark(group.stamp_ns, "synced")
        replaced = self._slot.put(group, key=group.anchor[0])  # latest wins per camera
        if replaced is not None:
            self.pipeline.count_superseded(replaced)
            self.latency.forget(replaced.stamp_ns)

    def _on_clock_tick(self) -> None:
        for group in self.pipeline.advance(self.get_clock().now().nanoseconds):
            self._hand_over(group)

    def _on_question(self, msg: String) -> None:
        self._publish(self.pipeline.ask(str(msg.data)))

    def _on_query(self, msg: String) -> None:
        """A text: the tracks ranked by it, as JSON on ``query_result`` (mmp.query/1)."""
        self._publish(self.pipeline.ask(str(msg.data), query=True))

    def _publish_diagnostics(self) -> None:
        live = self.latency.summary()
        extra = out.StatusReport(
            "multimodal_perception: live",
            out.OK,
            f"{self.frames_published} frames published",
            values={
                "frames_published": self.frames_published,
                **{f"latency.{k}": v for k, v in live.items()},
            },
        )
        stamp = self.get_clock().now().nanoseconds
        self._publish([self.pipeline.diagnostics_output(stamp, [extra])])

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name == "use_sim_time":
                continue
            if not param.name.startswith(RUNTIME_PREFIXES):
                return SetParametersResult(successful=False, reason=f"{param.name} needs a restart")
            try:
                updates[param.name] = validate(param.name, param.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if updates:
            self.pipeline.update_parameters(updates)
        return SetParametersResult(successful=True)

    # -- compute thread ------------------------------------------------------------------
    def _compute_loop(self) -> None:
        while (group := self._slot.take()) is not None:
            try:
                self._run(group)
            finally:
                self._slot.done()

    def _run(self, group: SyncGroup) -> None:
        self.latency.mark(group.stamp_ns, "started")
        outputs = self.pipeline.run(group)
        self._publish(outputs)
        if outputs:
            self.frames_published += 1
            self.latency.mark(group.stamp_ns, "published")

    def _publish(self, outputs: list[Output]) -> None:
        for o in outputs:
            pub = self._outputs.get(o.topic)
            if pub is not None:
                pub.publish(o.msg)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """True once no frame waits and none is being computed (tests, shutdown)."""
        return self._slot.wait_idle(timeout_s)

    def shutdown(self) -> dict[str, Any]:
        """Stop computing: the waiting frame and the synchroniser's pending ones are run
        and published; returns (and prints) the final accounting."""
        waiting = self._slot.close()
        self._compute.join()
        for group in waiting:
            self._run(group)
        for group in self.pipeline.flush():
            self._run(group)
        self._publish(self.pipeline.close())
        final = {
            "frames_published": self.frames_published,
            "latency": self.latency.summary(),
            "inputs": self.pipeline.accounting(),
        }
        print("multimodal_perception final accounting: " + json.dumps(final, sort_keys=True))
        sys.stdout.flush()
        return final


def main(args: list[str] | None = None) -> int:
    # The node handles SIGINT/SIGTERM itself so that it can finish its frames and report
    # before the context goes down (rclpy's handler would shut the context down first).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node = PerceptionNode()
    except (ParameterError, ValueError) as exc:
        print(f"multimodal_perception: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    finally:
        node.shutdown()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
