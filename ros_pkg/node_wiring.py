"""What both node variants wire: parameters, QoS, subscriptions, publishers, timers, the
compute thread, and the phases a managed node steps through.

``PerceptionWiring`` is a mixin over an rclpy ``Node`` (plain, ``node.py``) or
``LifecycleNode`` (managed, ``managed_node.py``). Everything between a message in and a
message out is the session driver's (``multimodal_perception.pipeline.Pipeline``):

- subscription callbacks (executor thread) call ``Pipeline.ingest``: decode, count,
  synchronise. tf is state, applied there and never queued;
- a complete frame goes to a latest-wins slot of depth one; a frame still waiting when
  a newer one completes is counted ``superseded_by_newer_frame``;
- the compute thread runs ``Pipeline.run`` on the slot's frame and publishes its outputs;
- timers: the ROS clock advances the synchroniser (so the last frame is not left waiting
  for a message that never comes), ``/diagnostics`` every ``diagnostics.period_s``, and
  the multimodal worker's answers.

Phases: ``configure`` (parameters declared once per process and read, models loaded,
publishers made), ``start`` (subscriptions, timers, compute thread), ``stop`` (no more
input; the waiting and pending frames are run and published), ``release`` (models and
publishers freed; the session's accounting printed). A publisher whose QoS cannot match
a subscription is named on that input in ``/diagnostics``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    SetParametersResult,
)
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from vision_msgs.msg import LabelInfo

from ..config import PARAMETERS, ParameterError, Parameters, camera_specs, validate
from ..fusion.sync import SyncGroup
from ..latency import FrameLatency
from ..pipeline import Output, Pipeline
from ..scheduling import LatestSlot
from . import outputs as out
from .factory import RclpyFactory
from .node_interface import (
    LATCHED,
    OUTPUT_TYPES,
    PER_CAMERA_OUTPUTS,
    RUNTIME_PREFIXES,
    descriptor,
)


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _policy_name(kind: Any) -> str:
    with contextlib.suppress(ValueError):
        return QoSPolicyKind(kind).name
    return str(kind)


class PerceptionWiring:
    """Mixed into an rclpy Node; the methods below use only the Node API."""

    params: Parameters | None = None
    pipeline: Pipeline | None = None

    # -- phases --------------------------------------------------------------------------
    def configure(self) -> None:
        """Parameters (declared on the first call), tf, models, publishers."""
        self.params = self._declare_parameters()
        transforms = self._tf_source()
        self.pipeline = Pipeline(self.params, RclpyFactory(), transforms)
        self.pipeline.diagnostics_on_frames = False  # a timer publishes them
        self.pipeline.calibration.inline = False  # checks on their own worker
        self._own_tf = transforms is None
        self.latency = FrameLatency()
        self.frames_published = 0
        self._outputs = self._make_publishers()
        if not getattr(self, "_parameter_callback", False):
            self.add_on_set_parameters_callback(self._on_set_parameters)
            self._parameter_callback = True
        models = self.pipeline.models.describe()
        self.get_logger().info(
            f"detector {models['detector']} on {self.pipeline.models.detector.backend.provider}, "
            f"segmenter {models['segmenter']}"
            + (" (project-trained embedded defaults)" if models["embedded_default"] else "")
            + ("; tf from tf2_ros" if transforms is not None else "; tf from /tf, /tf_static")
        )

    def start(self) -> None:
        """Subscriptions, timers and the compute thread: frames flow."""
        assert self.params is not None, "configure() first"
        self.pipeline.ingest_stage.resume()  # a pause is neither silence nor a clock step
        self._slot: LatestSlot[SyncGroup] = LatestSlot()
        self._inputs = self._make_subscriptions(own_tf=self._own_tf)
        self._inputs += [
            self.create_subscription(String, "question", self._on_question, 10),
            self.create_subscription(String, "query", self._on_query, 10),
        ]
        timeout_s = max(self.params["sync.timeout_ms"] / 1e3, 0.02)
        self._timers = [
            self.create_timer(timeout_s / 2, self._on_clock_tick),
            self.create_timer(self.params["diagnostics.period_s"], self._publish_diagnostics),
            self.create_timer(0.1, lambda: self._publish(self.pipeline.poll())),
        ]
        self._compute = threading.Thread(target=self._compute_loop, name="mmp-compute")
        self._compute.start()

    def stop(self) -> None:
        """No more input: the waiting frame and the synchroniser's pending ones are run
        and published; models stay loaded. Safe after a start that failed half-way."""
        for timer in getattr(self, "_timers", []):
            self.destroy_timer(timer)
        for sub in getattr(self, "_inputs", []):
            self.destroy_subscription(sub)
        self._timers, self._inputs = [], []
        slot, compute = getattr(self, "_slot", None), getattr(self, "_compute", None)
        waiting = slot.close() if slot is not None else []
        if compute is not None:
            compute.join()
        self._compute = None
        for group in waiting:
            self._run(group)
        for group in self.pipeline.flush():
            self._run(group)

    def release(self) -> dict[str, Any]:
        """Publishers freed (the models go with the pipeline, once it is dropped); returns
        (and prints) the session's accounting."""
        self._publish(self.pipeline.close())
        final = {
            "frames_published": self.frames_published,
            "latency": self.latency.summary(),
            "inputs": self.pipeline.accounting(),
        }
        print("multimodal_perception final accounting: " + json.dumps(final, sort_keys=True))
        sys.stdout.flush()
        for pub in self._outputs.values():
            self._unpublish(pub)
        self._outputs = {}
        if getattr(self, "_tf_listener", None) is not None:  # tf2_ros: its subscriptions
            self._tf_listener.unregister()
            self._tf_listener = None
        return final

    # -- wiring --------------------------------------------------------------------------
    def _declare_parameters(self) -> Parameters:
        """Declared on the first call; a later configure reads the values set since."""
        values = {}
        specs = list(PARAMETERS)
        while specs:
            spec = specs.pop(0)
            if self.has_parameter(spec.name):
                value = self.get_parameter(spec.name).value
            else:
                try:
                    declared = self.declare_parameter(spec.name, spec.default, descriptor(spec))
                except InvalidParameterTypeException as exc:  # `1` in a YAML for a float
                    msg = f"{exc} (write {spec.name} like {spec.default!r})"
                    raise ParameterError(msg) from None
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

    def _make_subscriptions(self, own_tf: bool) -> list[Any]:
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
        return [
            self.create_subscription(
                t,
                topic,
                self._callback(topic, topic in images),
                q,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=self._incompatible_qos(topic, q)
                ),
            )
            for topic, t, q in subs
        ]

    def _publisher(self, msg_type: Any, topic: str, qos: Any) -> Any:
        """An output publisher (the managed node makes lifecycle publishers)."""
        return self.create_publisher(msg_type, topic, qos)

    def _unpublish(self, publisher: Any) -> None:
        self.destroy_publisher(publisher)

    def _make_publishers(self) -> dict[str, Any]:
        pubs = {name: self._publisher(t, name, 10) for name, t in OUTPUT_TYPES.items()}
        if self.pipeline.rig:  # each camera's own outputs under its name
            for camera in self.pipeline.cameras:
                for name in PER_CAMERA_OUTPUTS:
                    topic = camera.output(name)
                    pubs[topic] = self._publisher(OUTPUT_TYPES[name], topic, 10)
        pubs["label_info"] = self._publisher(LabelInfo, "label_info", LATCHED)
        pubs["/diagnostics"] = self._publisher(DiagnosticArray, "/diagnostics", 10)
        return pubs

    # -- callbacks (executor thread) -----------------------------------------------------
    def _callback(self, topic: str, camera: bool) -> Callable[[Any], None]:
        def on_message(msg: Any) -> None:
            self.on_message(topic, msg, camera)

        return on_message

    def _incompatible_qos(
        self, topic: str, qos: QoSProfile
    ) -> Callable[[QoSRequestedIncompatibleQoSInfo], None]:
        def on_event(info: QoSRequestedIncompatibleQoSInfo) -> None:
            policy = _policy_name(info.last_policy_kind)
            asked = f"reliability={qos.reliability.name.lower()}, "
            asked += f"durability={qos.durability.name.lower()}"
            self.pipeline.note_input_problem(
                topic,
                "incompatible_qos_publisher",
                f"a publisher's QoS is incompatible (policy {policy}; this node asks "
                f"{asked}): its messages cannot arrive",
            )

        return on_event

    def on_message(self, topic: str, msg: Any, camera: bool = False) -> None:
        if camera:  # a malformed stamp is ingest's to count, not the meter's
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                self.latency.mark(_stamp_ns(msg), "received")
        arrival = self.get_clock().now().nanoseconds  # for silence: the diagnostics' clock
        for group in self.pipeline.ingest(topic, msg, arrival):
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
        if updates and self.pipeline is not None:  # else read at the next configure
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
