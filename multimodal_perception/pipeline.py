"""The session driver: (topic, message) in, output messages out, for the node and replay.

One object per session that the rclpy node and ``mmp replay`` both drive. The data path,
stage by stage:

    ingest   (ingest.Ingest)          decode, count every message per topic
    sync     (fusion.sync)            group camera + lidar + radar on header stamps
    align    (fusion.alignment)       tf, calibration, motion compensation -> SyncedFrame
    core     (core.FrameCore)         detect ... describe -> FrameResult
    encode   (ros_pkg.frame_messages) FrameResult -> output messages
    report   (accounting)             diagnostics, per-topic accounting

A camera rig (``cameras.names``) runs the same path per camera: each camera message
anchors a frame with its own lidar and radar partners (``fusion.rig_sync``), one
``FrameCore`` per camera with one shared tracking stage, outputs under the camera's name
(``front/detections_2d``); on the merging camera's frames the merged scene of all cameras
(``rig_merge``) goes out on ``scene``, ``scene_text`` and ``objects_3d``.

``process`` runs them all for one message (replay). The node splits it: ``ingest`` in the
callbacks (cheap; the groups that became complete), ``run`` on its compute thread; both
may call in (accounting is under ``lock``). Replay drives it through ``lookahead`` (models
of frame N+1 run while frame N is fused) with ``align_group`` and ``run_aligned``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

from .accounting import account, diagnostics_statuses
from .calibration_stage import CalibrationHealth
from .config import Parameters
from .core import FrameCore
from .describe import describe_scene
from .findings import Findings, findings_outputs
from .frame import Aligned, FrameResult
from .fusion import kernels
from .fusion.alignment import AlignConfig, NoCameraError, align
from .fusion.sync import SyncGroup
from .fusion.transforms import TransformBuffer, TransformSource
from .ingest import Ingest
from .inspection import Inspection
from .overlay import result_overlay
from .perception.multimodal_worker import MultimodalResult
from .perception.scene_qa import result_payload, scene_qa
from .perception.stack import ModelStack, load_models
from .rig import RigCamera, camera_of_topic, merged_camera, rig_cameras, synchronizer
from .rig_merge import RigMerger
from .ros_pkg import outputs as out
from .ros_pkg.camera_info import CameraModel
from .ros_pkg.factory import MessageFactory
from .ros_pkg.frame_messages import (
    Output,
    encode_frame,
    encode_scene_objects,
    label_info_output,
)
from .tracking_stage import TrackingStage

log = logging.getLogger("multimodal_perception.pipeline")

NS = 1_000_000_000
TIMINGS_KEPT = 20_000
__all__ = ["Output", "Pipeline"]


class Pipeline:
    def __init__(
        self,
        params: Parameters,
        factory: MessageFactory,
        transforms: TransformSource | None = None,
        clock: Callable[[], float] = time.perf_counter,
        models: ModelStack | None = None,
    ) -> None:
        self.params = params
        self.factory = factory
        self.clock = clock
        self.lock = threading.RLock()
        self.ingest_stage = Ingest(params)
        self.cameras = rig_cameras(params)
        self.camera_of = camera_of_topic(self.cameras)
        self.rig = bool(self.cameras[0].name)
        self.sync = synchronizer(params, self.cameras)
        # Replay feeds /tf into its own buffer; the node passes tf2_ros or its own listener.
        self.tf: TransformSource = transforms if transforms is not None else TransformBuffer()
        self._tf_owned = transforms is None
        self.camera_models: dict[str, CameraModel] = {}  # rig camera name ('' alone) ->
        self._align = AlignConfig(params["frames.base"], params["frames.fixed"],
                                  bool(params["fusion.ego_motion_compensation"]),
                                  anchor=params["sync.anchor"])  # fmt: skip
        self.models = models if models is not None else load_models(params)  # batch: preloaded
        self._models_owned = models is None  # a batch worker's stack outlives its pipelines
        compile_s = kernels.warm_up()  # before the first frame, not during it
        if compile_s > 2.0:
            log.info("fusion kernels compiled in %.1f s (once per installation)", compile_s)
        shared = TrackingStage(params) if self.rig else None
        grounds: dict | None = {} if self.rig else None
        self.cores = {
            cam.name: FrameCore(params, self.models, clock, shared, cam.score_threshold, grounds)
            for cam in self.cameras
        }
        self.core = self.cores[self.cameras[0].name]
        self.tracking = self.core.tracking
        window_ns = round(params["cameras.merge_window_ms"] * 1e6)
        self.merger = RigMerger([c.name for c in self.cameras], merged_camera(params), window_ns)
        self.qa = scene_qa(params)  # vlm.*: captions and answers, on their own worker
        zones = params["inspection.zones_file"]
        self.inspection = Inspection(zones) if zones else None
        self.findings = Findings(params)  # open_vocab.*: CLIP on crops, on its own worker
        self.calibration = CalibrationHealth(params, inline=True)  # the node: a worker
        # The newest TIMINGS_KEPT stage times each: a node runs for days (reports give
        # percentiles over them).
        self.timings: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=TIMINGS_KEPT))
        self.filter_counts: Counter[str] = Counter()
        self.class_counts: Counter[str] = Counter()
        self.frames = 0
        self.keep_debug = False  # replay sets it to draw pictures of frames
        self.last_result: FrameResult | None = None
        self.degraded_counts: Counter[str] = Counter()
        self.degraded_detail = ""  # the newest alignment problem, in words
        # Replay writes /diagnostics every diagnostics.period_s of header time; the node
        # turns this off and publishes them from a timer instead.
        self.diagnostics_on_frames = True
        self.keep_results = False  # tests set it to collect every FrameResult
        self.results: list[FrameResult] = []
        self.merged_scenes: list[dict[str, Any]] = []  # a rig's, with keep_results
        self._label_info_sent = False
        self._last_diag_ns: int | None = None
        # Header time went backwards (``lookahead`` defers it past the frames it holds).
        self.on_time_jump: Callable[[], None] = self._on_time_jump

    # -- what other code reads -----------------------------------------------------------
    @property
    def multimodal(self) -> Any:
        return self.qa.worker

    @property
    def camera_model(self) -> CameraModel | None:
        """The (first) camera's calibration."""
        return self.camera_models.get(self.cameras[0].name)

    def inputs(self) -> dict[str, str]:
        """Input topic -> role."""
        return dict(self.ingest_stage.roles)

    # -- the data path -------------------------------------------------------------------
    def process(self, topic: str, msg: Any) -> list[Output]:
        """One message through every stage (replay)."""
        outputs: list[Output] = []
        for group in self.ingest(topic, msg):
            outputs += self.run(group)
        return outputs + self.poll()

    def ingest(self, topic: str, msg: Any, arrival_ns: int | None = None) -> list[SyncGroup]:
        """Decode and count a message, apply tf and calibration, synchronise; returns the
        frames that became complete. ``arrival_ns``: the node's clock at the callback."""
        t0 = self.clock()
        with self.lock:
            decoded = self.ingest_stage.decode(topic, msg, arrival_ns)
            self.timings["decode"].append((self.clock() - t0) * 1e3)
            if decoded is None:
                return []
            if decoded.role in ("tf", "tf_static"):
                if self._tf_owned:
                    self.tf.apply(decoded.payload, static=decoded.role == "tf_static")
                return []
            if decoded.role == "camera_info":
                name, info = self.camera_of[topic].name, decoded.payload
                if name not in self.camera_models:
                    self.models.prepare(info.width, info.height)
                self.camera_models[name] = info
                return []
            prior_resets = self.sync.resets
            groups = self.sync.push(
                decoded.role, decoded.stamp_ns, (topic, decoded.payload), key=topic
            )
            if self.sync.resets != prior_resets:
                self.on_time_jump()
            return groups

    def advance(self, clock_ns: int) -> list[SyncGroup]:
        """The ROS clock moved on with no message: frames whose partners timed out. Only
        while the ROS clock and the header stamps agree (within sync.max_age): a driver
        stamping with its own device clock must not time every frame out at once."""
        with self.lock:
            newest = self.sync.clock
            if newest is None or not 0 < clock_ns - newest <= self.sync.config.max_age_ns:
                return []
            return self.sync.advance(clock_ns)

    def flush(self) -> list[SyncGroup]:
        """End of stream: every pending frame, with what arrived."""
        with self.lock:
            return self.sync.flush()

    def finish(self) -> list[Output]:
        """End of stream: the pending frames' outputs."""
        outputs: list[Output] = []
        for group in self.flush():
            outputs += self.run(group)
        return outputs

    def run(self, group: SyncGroup) -> list[Output]:
        """Align, run the core, encode: one frame's outputs (none if it failed, counted)."""
        aligned = self.align_group(group)
        return self.run_aligned(aligned) if aligned is not None else []

    def align_group(self, group: SyncGroup) -> Aligned | None:
        """A complete group aligned into a frame (None if it cannot be, counted)."""
        topic = group.anchor[0]
        # Another sensor may anchor the frames of a one-camera setup.
        camera = self.camera_of.get(topic, self.cameras[0])
        try:
            t0 = self.clock()
            frame = align(group, self.tf, self.camera_models.get(camera.name), self._align)
            return Aligned(topic, camera, frame, (self.clock() - t0) * 1e3)
        except NoCameraError as exc:
            log.info("%s", exc)
            with self.lock:
                self.ingest_stage.count(topic, "used", -1)
                self.ingest_stage.count(topic, "no_camera_partner")
        except Exception as exc:
            self._failed(topic, group.stamp_ns, exc)
        return None

    def _failed(self, topic: str, stamp_ns: int, exc: Exception) -> None:
        log.exception("frame at %d ns failed: %s", stamp_ns, exc)
        with self.lock:
            self.ingest_stage.count(topic, "used", -1)
            self.ingest_stage.count(topic, "processing_error")

    def run_aligned(self, aligned: Aligned) -> list[Output]:
        """The core and the encoders on an aligned frame: its outputs (none if it failed)."""
        frame = aligned.frame
        try:
            result = self.cores[aligned.camera.name].step(frame)
            result.timings_ms["align"] = aligned.align_ms
            self.calibration.offer(aligned.camera.name, frame)
            if suspect := self.calibration.degraded(aligned.camera.name):
                result.degraded = tuple(sorted({*result.degraded, suspect}))
                result.scene["degraded"] = sorted({*result.scene["degraded"], suspect})
            if frame.notes:
                self.degraded_detail = frame.notes[-1]
            return self._frame_outputs(result, aligned.camera)
        except Exception as exc:
            self._failed(aligned.topic, frame.stamp_ns, exc)
            return []

    def count_superseded(self, group: SyncGroup) -> None:
        """A complete frame the node dropped for a newer one (latest wins)."""
        with self.lock:
            self.ingest_stage.supersede(group.anchor[0], group.stamp_ns)

    def note_input_problem(self, topic: str, note: str, problem: str) -> None:
        """A problem with an input found outside its messages (a publisher's QoS)."""
        with self.lock:
            self.ingest_stage.note(topic, note, problem)

    def _on_time_jump(self) -> None:
        log.warning("header time went backwards: synchroniser, tracks and tf history reset")
        if self._tf_owned:
            self.tf.clear()
        self.tracking.reset()  # a rig's cores share this one tracking stage
        self.merger.reset()
        self.calibration.reset()

    def _frame_outputs(self, result: FrameResult, camera: RigCamera) -> list[Output]:
        p = self.params
        with self.lock:
            for name, ms in result.timings_ms.items():
                self.timings[name].append(ms)
            self.frames += 1
            for d in result.decisions:
                self.filter_counts[d.reason] += 1
            self.filter_counts["class_not_wanted"] += result.unwanted
            self.filter_counts["duplicate_3d"] += len(result.duplicates)
            self.degraded_counts.update(result.degraded)
            names = result.detections.class_names
            self.class_counts.update(names[result.detections.class_ids[i]] for i in result.kept)
            if self.keep_results:
                self.results.append(result)
        # A rig: on the merging camera's frames, the scene of every camera together.
        merged = None
        if self.rig and self.merger.add(camera.name, result):
            merged = self.merger.merged_scene(result, self.tracking)
            if self.keep_results:
                self.merged_scenes.append(merged)
        events = []
        if self.inspection is not None and not self.rig:
            events = self.inspection.step(result, self.tf, p["frames.base"])
            result.scene["events"] = self.inspection.active()
        elif self.inspection is not None and merged is not None:
            tracks = {t.track_id: t for t in self.tracking.tracker.tracks}
            events = self.inspection.step_scene(merged, tracks, self.tf, p["frames.base"])
            merged["events"] = self.inspection.active()
        zone_list = self.inspection.monitor.zones if self.inspection is not None else ()
        self.findings.offer(result, self.tf, self.camera_models.get(camera.name), zone_list)
        for scene in (result.scene, merged or {}):
            scene["findings"] = self.findings.latest
        if self.keep_debug:
            self.last_result = result
        if not self.rig or merged is not None:
            self.qa.offer(result.stamp_ns, result.image, merged or result.scene)
        outputs = encode_frame(
            result,
            self.factory,
            p["frames.base"],
            rejected=bool(p["output.rejected"]),
            segmentation=bool(p["output.segmentation"]),
            debug_image=self.overlay(result) if p["output.debug_image"] else None,
        )
        if self.rig:
            outputs = [Output(camera.output(o.topic), o.msg, o.stamp_ns) for o in outputs]
        if merged is not None:
            text = describe_scene(merged, p["description.language"])
            outputs += encode_scene_objects(merged, text, self.factory, p["frames.base"])
        for event in events:
            text = json.dumps(event, sort_keys=True)
            outputs.append(Output("events", out.string_msg(self.factory, text), result.stamp_ns))
        seg = result.segmentation
        if seg is not None and p["output.segmentation"] and not self._label_info_sent:
            self._label_info_sent = True
            outputs.append(label_info_output(result, self.factory))
        period = int(p["diagnostics.period_s"] * NS)
        stamp = result.stamp_ns
        due = self._last_diag_ns is None or stamp - self._last_diag_ns >= period
        if self.diagnostics_on_frames and due:
            self._last_diag_ns = stamp
            outputs.append(self.diagnostics_output(stamp))
        return outputs

    overlay = staticmethod(result_overlay)  # the frame with everything drawn on it

    # -- questions and captions ----------------------------------------------------------
    def ask(self, text: str, query: bool = False) -> list[Output]:  # query: SceneQA.query
        return [self._result_output(r) for r in (self.qa.query if query else self.qa.ask)(text)]

    def poll(self) -> list[Output]:
        """Finished captions and answers, and open-vocabulary findings."""
        found = findings_outputs(self.findings.poll(), self.factory) + self._checks()
        return [self._result_output(r) for r in self.qa.poll()] + found

    def _checks(self) -> list[Output]:
        return [Output("calibration_health", out.string_msg(self.factory, text), stamp)
                for stamp, text in self.calibration.poll()]  # fmt: skip

    def close(self) -> list[Output]:
        """Stop the multimodal workers (returns their last results), and the model stack's
        workers when this pipeline loaded the stack."""
        results = [self._result_output(r) for r in self.qa.close()]
        results += findings_outputs(self.findings.close(), self.factory)
        self.calibration.close()
        results += self._checks()  # the worker's last check
        if self._models_owned:
            self.models.close()
        return results

    def _result_output(self, result: MultimodalResult) -> Output:
        msg = out.string_msg(self.factory, result_payload(result))
        return Output(result.topic, msg, result.stamp_ns)

    # -- parameters and reporting --------------------------------------------------------
    def update_parameters(self, updates: dict[str, Any]) -> None:
        """Run-time changes: thresholds, description, outputs, tracking."""
        with self.lock:
            self.params = self.params.with_overrides(updates)
            for core in self.cores.values():
                core.update_parameters(self.params)
            self.findings.update_parameters(self.params)

    def accounting(self) -> dict[str, dict[str, Any]]:
        """Per input topic: received, used, dropped by reason (sync outcomes folded in)."""
        with self.lock:
            return account(self.ingest_stage, self.sync)

    def diagnostics_output(
        self, stamp_ns: int, extra: list[out.StatusReport] | None = None
    ) -> Output:
        with self.lock:
            statuses = diagnostics_statuses(
                self.accounting(), self.timings, self.frames, self.qa,
                self.degraded_counts, self.degraded_detail,
                self.ingest_stage.silences(stamp_ns),
            ) + list(extra or ())  # fmt: skip
        if self.inspection is not None:
            statuses.append(self.inspection.status())
        statuses += self.findings.diagnostics() + self.calibration.diagnostics()
        msg = out.diagnostic_array(self.factory, stamp_ns=stamp_ns, statuses=statuses)
        return Output("/diagnostics", msg, stamp_ns)
