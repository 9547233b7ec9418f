"""The ROS-free perception pipeline: (topic, message) in, output messages out.

One object, configured from the parameters, that the rclpy node and the replay job both
drive: decode and validate inputs, synchronise on header stamps, detect, segment, filter
boxes by semantic and geometric consistency, fuse the kept ones with lidar and radar into
3D objects, track them, describe the scene, and build the output messages. A missing
sensor, a missing calibration or a bad message degrades the output (and says so in it);
it never stops the pipeline. Every input message is accounted for: used, or dropped with
a counted reason.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Parameters, sync_config
from .describe import SCHEMA_ID, bearing_deg, describe_scene
from .fusion.consistency import (
    ConsistencyFilter,
    Decision,
    FilterConfig,
    lidar_evidence,
    radar_evidence,
)
from .fusion.ego_motion import compensate
from .fusion.fusion3d import (
    LidarFrame,
    Object3D,
    object_from_camera,
    object_from_lidar,
    prepare_lidar,
)
from .fusion.projection import project_points
from .fusion.radar_assoc import associate, associate_in_image, ego_compensate
from .fusion.sync import Outcome, SyncedFrame, Synchronizer
from .fusion.tracking import Measurement, Tracker, TrackerConfig
from .fusion.transforms import TransformBuffer, TransformError, TransformSource
from .perception.detector import Detections, Detector, TilingConfig
from .perception.models import default_model, load_model, model_directory
from .perception.multimodal import GroundedFallback
from .perception.multimodal_worker import MultimodalResult, MultimodalWorker
from .perception.runtime import ModelLoadError, RuntimeOptions
from .perception.segmenter import Segmentation, Segmenter
from .ros_pkg import outputs as out
from .ros_pkg.camera_info import CameraModel, camera_info_to_model
from .ros_pkg.errors import MessageError
from .ros_pkg.factory import MessageFactory
from .ros_pkg.image import array_to_image, compressed_to_bgr8, image_to_bgr8
from .ros_pkg.pointcloud import cloud_to_xyz
from .ros_pkg.radar import (
    RadarPoints,
    radar_cloud_to_points,
    radar_scan_to_points,
    radar_tracks_to_arrays,
)
from .ros_pkg.stamps import header_stamp_ns
from .ros_pkg.tf_msgs import tf_message_to_transforms

log = logging.getLogger("multimodal_perception.pipeline")

NS = 1_000_000_000


@dataclass(frozen=True)
class Output:
    topic: str  # relative to the node's namespace, except "/diagnostics"
    msg: Any
    stamp_ns: int


@dataclass
class TopicStats:
    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def used(self) -> int:
        return self.outcomes.get("used", 0)

    @property
    def dropped(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.outcomes.items()) if k != "used"}


@dataclass
class CameraData:
    bgr: np.ndarray
    frame_id: str


@dataclass
class LidarData:
    xyz: np.ndarray
    frame_id: str


class Pipeline:
    def __init__(
        self, params: Parameters, factory: MessageFactory, transforms: TransformSource | None = None
    ) -> None:
        self.params = params
        self.factory = factory
        if params["sync.anchor"] != "camera":
            raise ValueError(
                "sync.anchor: the pipeline needs the camera as its anchor "
                f"(got {params['sync.anchor']!r})"
            )
        self.sync = Synchronizer(sync_config(params))
        # Replay feeds /tf into its own buffer; the rclpy node passes a tf2_ros adapter.
        self.tf: TransformSource = transforms if transforms is not None else TransformBuffer()
        self.camera_model: CameraModel | None = None
        self.stats: dict[str, TopicStats] = defaultdict(TopicStats)
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.filter_counts: Counter[str] = Counter()
        self.class_counts: Counter[str] = Counter()
        self.frames = 0
        self._label_info_sent = False
        self._last_diag_ns: int | None = None
        self.keep_debug = False  # replay sets it to draw pictures of frames
        self.last_debug: dict[str, Any] | None = None
        self._tracking_frame = params["frames.base"]
        self._T_fixed_base = np.eye(4)
        self._load_models()
        self.multimodal = self._make_multimodal()
        self._last_frame: tuple[int, np.ndarray, dict[str, Any]] | None = None
        self.tracker = Tracker(
            TrackerConfig(
                confirm_hits=int(params["tracking.confirm_hits"]),
                max_missed_s=float(params["tracking.max_missed_s"]),
            )
        )
        self._topic_role = self._roles()

    # -- set-up --------------------------------------------------------------------------
    def _load_models(self) -> None:
        p = self.params
        directory = model_directory(p["models.directory"] or None)
        options = RuntimeOptions(
            providers=tuple(s.strip() for s in p["models.providers"].split(",")),
            intra_op_threads=int(p["models.threads"]),
        )
        det_name = p["models.detector"] or default_model("detection", directory)
        manifest, backend = load_model(det_name, directory, options)
        threshold = p["detector.score_threshold"]
        tiling = TilingConfig(
            enabled=bool(p["detector.tiling"]),
            size=int(p["detector.tile_size"]) or None,
            overlap=float(p["detector.tile_overlap"]),
        )
        self.detector = Detector(manifest, backend, threshold if threshold >= 0 else None, tiling)
        self.segmenter: Segmenter | None = None
        seg_name = p["models.segmenter"] or default_model("segmentation", directory)
        if seg_name != "none":
            seg_manifest, seg_backend = load_model(seg_name, directory, options)
            if seg_manifest.task != "segmentation":
                raise ModelLoadError(
                    f"models.segmenter={seg_name!r} is a {seg_manifest.task} model"
                )
            self.segmenter = Segmenter(seg_manifest, seg_backend, mode=p["segmenter.mode"])
        self.lanes: Segmenter | None = None
        if p["models.lanes"]:
            lanes_manifest, lanes_backend = load_model(p["models.lanes"], directory, options)
            if lanes_manifest.task != "lanes":
                raise ModelLoadError(
                    f"models.lanes={p['models.lanes']!r} is a {lanes_manifest.task} model"
                )
            self.lanes = Segmenter(lanes_manifest, lanes_backend)
        self.embedded_default = manifest.trained_by_project
        label_space = "cityscapes"
        if self.segmenter is not None:
            label_space = self.segmenter.manifest.decoder_params.get("label_space", "cityscapes")
        thresholds = {
            k.rsplit(".", 1)[1]: v for k, v in p.values.items() if k.startswith("filter.threshold.")
        }
        self.filter = ConsistencyFilter(
            self.detector.class_names,
            self.segmenter.class_names if self.segmenter else (),
            FilterConfig(
                label_space=label_space,
                default_threshold=p["filter.default_threshold"],
                thresholds=thresholds,
                enabled=bool(p["filter.enabled"]),
            ),
        )
        if self.embedded_default:
            log.warning(
                "no real model directory: using the project-trained models %s / %s, "
                "trained on the synthetic world only",
                det_name,
                seg_name,
            )

    def _make_multimodal(self) -> MultimodalWorker | None:
        """The caption worker for a configured model; None: captions off, questions are
        answered from the structured scene."""
        from .perception.multimodal import OpenAIChatVLM, TransformersVLM

        p = self.params
        kind = p["vlm.backend"]
        if kind == "none":
            log.info("vlm.backend is none: no captions; questions use the grounded fallback")
            return None
        if kind == "transformers":
            backend = TransformersVLM(p["vlm.model_dir"])
        else:
            if not p["vlm.endpoint"]:
                raise ValueError("vlm.backend=openai needs vlm.endpoint")
            backend = OpenAIChatVLM(p["vlm.endpoint"], p["vlm.model"], timeout_s=p["vlm.timeout_s"])
        return MultimodalWorker(backend, rate_hz=p["vlm.rate_hz"])

    def ask(self, question: str) -> list[Output]:
        """A question about the latest frame: queued for the model, or answered now from
        the structured scene when no model is configured."""
        if self._last_frame is None:
            result = MultimodalResult(
                "answer",
                0,
                "No frame has been processed yet.",
                "grounded_fallback",
                0.0,
                question=question,
            )
            return [self._result_output(result)]
        stamp, image, scene = self._last_frame
        if self.multimodal is not None:
            self.multimodal.ask(question, stamp, image, scene)
            return []
        t0 = time.perf_counter()
        text = GroundedFallback().answer(question, [image], scene)
        result = MultimodalResult(
            "answer",
            stamp,
            text,
            "grounded_fallback",
            (time.perf_counter() - t0) * 1e3,
            question=question,
        )
        return [self._result_output(result)]

    def poll(self) -> list[Output]:
        """Finished captions and answers from the multimodal worker."""
        if self.multimodal is None:
            return []
        return [self._result_output(r) for r in self.multimodal.results()]

    def _result_output(self, result: MultimodalResult) -> Output:
        text = json.dumps(result.to_json(), sort_keys=True)
        return Output(result.topic, out.string_msg(self.factory, text), result.stamp_ns)

    def close(self) -> list[Output]:
        """Wait for the multimodal worker and stop it; returns its last results."""
        if self.multimodal is None:
            return []
        self.multimodal.wait_idle()
        outputs = self.poll()
        self.multimodal.close()
        return outputs

    def _roles(self) -> dict[str, str]:
        p = self.params
        return {
            p["topics.camera"]: "camera",
            p["topics.camera_compressed"]: "camera",
            p["topics.camera_info"]: "camera_info",
            p["topics.lidar"]: "lidar",
            p["topics.radar"]: "radar",
            p["topics.tf"]: "tf",
            p["topics.tf_static"]: "tf_static",
        }

    def count_dropped(self, topic: str, reason: str) -> None:
        """A message dropped before the pipeline saw it (e.g. by the node's worker queue)."""
        stats = self.stats[topic]
        stats.received += 1
        stats.outcomes[reason] += 1

    def update_parameters(self, updates: dict[str, Any]) -> None:
        """Run-time changes: thresholds, description, outputs, tracking."""
        self.params = self.params.with_overrides(updates)
        p = self.params
        thresholds = {
            k.rsplit(".", 1)[1]: v for k, v in p.values.items() if k.startswith("filter.threshold.")
        }
        old = self.filter.config
        self.filter.config = FilterConfig(
            label_space=old.label_space,
            default_threshold=p["filter.default_threshold"],
            thresholds=thresholds,
            enabled=bool(p["filter.enabled"]),
        )
        threshold = p["detector.score_threshold"]
        if threshold >= 0:
            self.detector.set_score_threshold(threshold)
        self.tracker.config = TrackerConfig(
            confirm_hits=int(p["tracking.confirm_hits"]),
            max_missed_s=float(p["tracking.max_missed_s"]),
        )

    def inputs(self) -> dict[str, str]:
        """Input topic -> role."""
        return dict(self._topic_role)

    # -- input ---------------------------------------------------------------------------
    def process(self, topic: str, msg: Any) -> list[Output]:
        role = self._topic_role.get(topic)
        if role is None:
            return []
        stats = self.stats[topic]
        stats.received += 1
        t0 = time.perf_counter()
        try:
            if role in ("tf", "tf_static"):
                for t in tf_message_to_transforms(msg):
                    self.tf.set_transform(t, static=role == "tf_static")
                stats.outcomes["used"] += 1
                return []
            if role == "camera_info":
                self.camera_model = camera_info_to_model(msg)
                stats.outcomes["used"] += 1
                return []
            stamp = header_stamp_ns(msg, getattr(msg, "__msgtype__", role))
            payload = self._decode(role, msg)
        except MessageError as exc:
            stats.outcomes[exc.reason] += 1
            log.warning("%s: dropped: %s", topic, exc)
            return []
        except (ValueError, TransformError) as exc:
            stats.outcomes["bad_" + role] += 1
            log.warning("%s: dropped: %s", topic, exc)
            return []
        finally:
            self.timings["decode"].append((time.perf_counter() - t0) * 1e3)
        prior_resets = self.sync.resets
        frames = self.sync.push(role, stamp, (topic, payload))
        if self.sync.resets != prior_resets:
            self._on_time_jump()
        outputs = []
        for frame in frames:
            outputs += self._run_frame(frame)
        return outputs + self.poll()

    def finish(self) -> list[Output]:
        outputs = []
        for frame in self.sync.flush():
            outputs += self._run_frame(frame)
        return outputs

    def _on_time_jump(self) -> None:
        log.warning("header time went backwards: synchroniser, tracker and tf history reset")
        self.tf.clear()
        self.tracker = Tracker(self.tracker.config)

    def _decode(self, role: str, msg: Any) -> Any:
        msgtype = getattr(msg, "__msgtype__", "") or type(msg).__name__
        if role == "camera":
            bgr = compressed_to_bgr8(msg) if hasattr(msg, "format") else image_to_bgr8(msg)
            return CameraData(bgr, str(msg.header.frame_id))
        if role == "lidar":
            xyz, _ = cloud_to_xyz(msg)
            return LidarData(xyz, str(msg.header.frame_id))
        if hasattr(msg, "returns"):
            return radar_scan_to_points(msg)
        if hasattr(msg, "tracks"):
            tracks = radar_tracks_to_arrays(msg)
            # Tracks become points at their centroids with their velocity's radial part.
            rng = np.linalg.norm(tracks.position, axis=1)
            radial = np.einsum("ij,ij->i", tracks.velocity, tracks.position) / np.maximum(rng, 1e-6)
            return RadarPoints(
                tracks.stamp_ns,
                tracks.frame_id,
                tracks.position.astype(np.float32),
                radial.astype(np.float32),
                np.full(len(rng), np.nan, np.float32),
                "track_velocity",
            )
        if hasattr(msg, "fields"):
            return radar_cloud_to_points(msg)
        raise ValueError(f"radar message of type {msgtype} is not supported")

    # -- one synced frame ----------------------------------------------------------------
    def _timed(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings[name].append((now - t0) * 1e3)
        return now

    def _run_frame(self, frame: SyncedFrame) -> list[Output]:
        topic, camera = frame.anchor
        try:
            return self._frame_outputs(frame, camera)
        except Exception as exc:
            log.exception("frame at %d ns failed: %s", frame.stamp_ns, exc)
            self.stats[topic].outcomes["used"] -= 1
            self.stats[topic].outcomes["processing_error"] += 1
            return []

    def _frame_outputs(self, frame: SyncedFrame, camera: CameraData) -> list[Output]:
        p = self.params
        stamp = frame.stamp_ns
        base = p["frames.base"]
        degraded: list[str] = [f"no_{s}" for s in frame.missing]
        t0 = time.perf_counter()
        detections = self._wanted(self.detector(camera.bgr))
        t0 = self._timed("detector", t0)
        segmentation = self.segmenter.segment(camera.bgr) if self.segmenter else None
        t0 = self._timed("segmenter", t0)
        drivable = self._drivable(camera.bgr) if self.lanes is not None else None
        if drivable is not None:
            t0 = self._timed("lanes", t0)
        model = self.camera_model
        if model is None:
            degraded.append("no_camera_info")
        elif (model.width, model.height) != (camera.bgr.shape[1], camera.bgr.shape[0]):
            degraded.append("camera_info_size_mismatch")
            model = None
        cam_frame = camera.frame_id or (model.frame_id if model else "")
        T_cam_base = T_base_cam = None
        if model is not None:
            try:
                T_cam_base = self.tf.lookup(cam_frame, base, stamp)
                T_base_cam = np.linalg.inv(T_cam_base)
            except TransformError as exc:
                degraded.append(f"no_tf_camera:{exc.reason}")
        lidar_frame = self._lidar(frame, T_cam_base, model, degraded)
        radar = self._radar(frame, degraded)
        t0 = self._timed("align", t0)
        decisions = self._judge(
            detections, segmentation, lidar_frame, radar, T_cam_base, model, camera.bgr.shape
        )
        t0 = self._timed("filter", t0)
        kept = [i for i, d in enumerate(decisions) if d.keep]
        objects = self._objects(detections, kept, lidar_frame, model, T_base_cam, segmentation)
        kept = self._deduplicate(detections, kept, objects)
        radar_assoc = self._associate(detections, kept, objects, radar, T_cam_base, model)
        t0 = self._timed("fusion3d", t0)
        tracked = self._track(stamp, detections, kept, objects, radar_assoc, degraded)
        t0 = self._timed("tracking", t0)
        scene = self._scene(
            frame,
            camera,
            cam_frame,
            detections,
            decisions,
            kept,
            objects,
            radar_assoc,
            tracked,
            degraded,
            drivable,
        )
        text = describe_scene(scene, p["description.language"])
        self._timed("describe", t0)
        self.frames += 1
        self._last_frame = (stamp, camera.bgr, scene)
        if self.multimodal is not None:
            self.multimodal.offer_frame(stamp, camera.bgr, scene)  # never waits
        if self.keep_debug:
            self.last_debug = {
                "bgr": camera.bgr,
                "scene": scene,
                "labels": segmentation.labels if segmentation is not None else None,
                "lidar_uv": lidar_frame.projection.uv if lidar_frame else None,
                "lidar_depth": lidar_frame.projection.depth if lidar_frame else None,
                "radar_uv": (
                    project_points(radar["xyz"], T_cam_base, model).uv
                    if radar is not None and model is not None and T_cam_base is not None
                    else None
                ),
            }
        for d in decisions:
            self.filter_counts[d.reason] += 1
        for i in kept:
            self.class_counts[detections.class_names[detections.class_ids[i]]] += 1
        return self._messages(
            stamp,
            cam_frame,
            base,
            detections,
            decisions,
            kept,
            objects,
            tracked,
            scene,
            text,
            segmentation,
            camera,
        )

    def _drivable(self, bgr: np.ndarray) -> dict[str, Any]:
        """Drivable-area and lane-line summary from a lanes model (TwinLiteNet)."""
        masks = self.lanes.lanes(bgr)
        h, w = masks.drivable.shape
        lower = masks.drivable[h // 2 :]
        ahead = masks.drivable[int(0.7 * h) :, int(0.4 * w) : int(0.6 * w)]
        return {
            "model": self.lanes.manifest.name,
            "drivable_fraction_lower_half": round(float(lower.mean()), 4),
            "ego_path_drivable": round(float(ahead.mean()), 4),
            "lane_line_pixels": int(masks.lanes.sum()),
        }

    def _wanted(self, det: Detections) -> Detections:
        wanted = {c.strip() for c in self.params["detector.classes"].split(",") if c.strip()}
        if not wanted:
            return det
        keep = np.array([det.class_names[c] in wanted for c in det.class_ids], dtype=bool)
        self.filter_counts["class_not_wanted"] += int((~keep).sum())
        return Detections(det.boxes[keep], det.scores[keep], det.class_ids[keep], det.class_names)

    def _partner_points(
        self, frame: SyncedFrame, sensor: str, degraded: list[str]
    ) -> tuple[Any, np.ndarray, np.ndarray] | None:
        """A partner's payload, its points moved to the camera stamp (odometry permitting),
        and its pose in base_link at its own stamp; None (flagged) without tf."""
        partner = frame.partners.get(sensor)
        if partner is None:
            return None
        _, payload = partner.msg
        try:
            T_base = self.tf.lookup(self.params["frames.base"], payload.frame_id, partner.stamp_ns)
        except TransformError as exc:
            degraded.append(f"no_tf_{sensor}:{exc.reason}")
            return None
        xyz = payload.xyz
        if self.params["fusion.ego_motion_compensation"]:
            comp = compensate(
                xyz,
                payload.frame_id,
                partner.stamp_ns,
                frame.stamp_ns,
                self.tf,
                self.params["frames.fixed"],
            )
            if comp.applied:
                xyz = comp.points
            else:
                degraded.append(f"{sensor}_not_motion_compensated")
        return payload, xyz, T_base

    def _lidar(
        self, frame: SyncedFrame, T_cam_base, model, degraded: list[str]
    ) -> LidarFrame | None:
        if T_cam_base is None or model is None:
            return None
        found = self._partner_points(frame, "lidar", degraded)
        if found is None:
            return None
        _, xyz, T_base_lidar = found
        return prepare_lidar(xyz, T_base_lidar, T_cam_base, model)

    def _ego_velocity(
        self, stamp: int, dt_ns: int = 100_000_000
    ) -> tuple[np.ndarray, float] | None:
        """Ego velocity (base axes) and yaw rate from odometry in tf, by finite difference
        over the ``dt_ns`` before ``stamp``; None without odometry."""
        base, fixed = self.params["frames.base"], self.params["frames.fixed"]
        try:
            b = self.tf.lookup(fixed, base, stamp)
            a = self.tf.lookup(fixed, base, stamp - dt_ns)
        except TransformError:
            return None
        dt = dt_ns / NS
        v_world = (b[:3, 3] - a[:3, 3]) / dt
        dyaw = math.atan2(b[1, 0], b[0, 0]) - math.atan2(a[1, 0], a[0, 0])
        dyaw = (dyaw + math.pi) % (2 * math.pi) - math.pi
        return b[:3, :3].T @ v_world, dyaw / dt

    def _radar(self, frame: SyncedFrame, degraded: list[str]) -> dict[str, np.ndarray] | None:
        found = self._partner_points(frame, "radar", degraded)
        if found is None:
            return None
        points, xyz, T = found
        xyz_base = np.asarray(xyz, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]
        sensor_xy = T[:2, 3]
        velocity = points.radial_velocity.astype(np.float64)
        if not points.over_ground:
            ego = self._ego_velocity(frame.stamp_ns)
            if ego is not None:
                velocity = ego_compensate(velocity, xyz_base, sensor_xy, ego[0][:2], ego[1])
            else:
                degraded.append("radar_velocity_relative_to_ego")
        return {"xyz": xyz_base, "v": velocity, "sensor_xy": sensor_xy}

    def _judge(
        self,
        det: Detections,
        seg: Segmentation | None,
        lidar: LidarFrame | None,
        radar,
        T_cam_base,
        model,
        shape,
    ) -> list[Decision]:
        n = len(det)
        lidar_ev = np.zeros(n)
        radar_ev = np.zeros(n)
        if lidar is not None:
            uv, depth = lidar.projection.uv, lidar.projection.depth
            for i, (x1, y1, x2, y2) in enumerate(det.boxes):
                w, h = x2 - x1, y2 - y1
                rows = (uv[:, 1] >= y1 + h / 5) & (uv[:, 1] < y2 - h / 20)
                core = rows & (uv[:, 0] >= x1 + w / 4) & (uv[:, 0] < x2 - w / 4)
                ring = rows & (
                    ((uv[:, 0] >= x1 - w / 2) & (uv[:, 0] < x1))
                    | ((uv[:, 0] >= x2) & (uv[:, 0] < x2 + w / 2))
                )
                lidar_ev[i] = lidar_evidence(depth[core], depth[ring], expected_points=8.0)
        if radar is not None and T_cam_base is not None and model is not None and len(radar["xyz"]):
            proj = project_points(radar["xyz"], T_cam_base, model)
            v = radar["v"][proj.index]
            for i, (x1, y1, x2, y2) in enumerate(det.boxes):
                inside = (
                    (proj.uv[:, 0] >= x1)
                    & (proj.uv[:, 0] < x2)
                    & (proj.uv[:, 1] >= y1)
                    & (proj.uv[:, 1] < y2)
                )
                radar_ev[i] = radar_evidence(v[inside])
        labels = seg.labels if seg is not None else None
        return self.filter.decide(
            det.boxes, det.class_ids, labels, (shape[1], shape[0]), lidar_ev, radar_ev
        )

    def _objects(
        self,
        det: Detections,
        kept: list[int],
        lidar: LidarFrame | None,
        model,
        T_base_cam,
        seg: Segmentation | None,
    ) -> dict[int, Object3D]:
        objects: dict[int, Object3D] = {}
        for i in kept:
            cls = det.class_names[det.class_ids[i]]
            obj = None
            if lidar is not None:
                obj = object_from_lidar(
                    det.boxes[i],
                    cls,
                    lidar,
                    self._mask_ok(lidar, seg, int(det.class_ids[i])),
                    eps=float(self.params["fusion.dbscan_eps"]),
                )
            if obj is None and model is not None and T_base_cam is not None:
                obj = object_from_camera(
                    det.boxes[i], cls, model, T_base_cam, lidar.ground if lidar else None
                )
            if obj is not None:
                objects[i] = obj
        return objects

    def _mask_ok(
        self, lidar: LidarFrame, seg: Segmentation | None, class_id: int
    ) -> np.ndarray | None:
        """Per projected lidar point: does the segmentation there agree with the class?"""
        lut = self.filter.luts[class_id] if seg is not None else None
        if lut is None:
            return None
        uv = lidar.projection.uv
        h, w = seg.labels.shape
        u = np.clip(uv[:, 0].astype(int), 0, w - 1)
        v = np.clip(uv[:, 1].astype(int), 0, h - 1)
        return lut[seg.labels[v, u]] > 0

    def _deduplicate(
        self, det: Detections, kept: list[int], objects: dict[int, Object3D]
    ) -> list[int]:
        """Two kept boxes of one class group that mostly overlap (70 % of the smaller box)
        or whose 3D centres lie within 1 m are one object seen twice (a rider called both
        person and cyclist, or a box from a tile and one from the full frame): keep the
        higher score."""
        from .fusion.tracking import CLASS_GROUPS

        order = sorted(kept, key=lambda i: -float(det.scores[i]))
        chosen: list[int] = []
        for i in order:
            obj = objects.get(i)
            group = CLASS_GROUPS.get(det.class_names[det.class_ids[i]])
            duplicate = any(
                CLASS_GROUPS.get(det.class_names[det.class_ids[j]]) == group
                and (
                    _overlap(det.boxes[i], det.boxes[j]) > 0.7
                    or (
                        obj is not None
                        and j in objects
                        and np.hypot(*(objects[j].center[:2] - obj.center[:2])) < 1.0
                    )
                )
                for j in chosen
            )
            if duplicate:
                self.filter_counts["duplicate_3d"] += 1
            else:
                chosen.append(i)
        return sorted(chosen)

    def _associate(self, det, kept, objects, radar, T_cam_base, model) -> dict[int, Any]:
        if radar is None or not objects:
            return {}
        lidar_ids = [i for i in kept if i in objects and objects[i].source == "lidar"]
        cam_ids = [i for i in kept if i in objects and objects[i].source == "camera_only"]
        result: dict[int, Any] = {}
        if lidar_ids:
            ev = associate(
                radar["xyz"],
                radar["v"],
                np.array([objects[i].center for i in lidar_ids]),
                np.array([objects[i].size for i in lidar_ids]),
                np.array([objects[i].yaw for i in lidar_ids]),
                radar["sensor_xy"],
                gate_m=float(self.params["fusion.radar_gate_m"]),
            )
            result.update(zip(lidar_ids, ev, strict=True))
        if cam_ids and T_cam_base is not None and model is not None:
            ev = associate_in_image(
                radar["xyz"],
                radar["v"],
                det.boxes[cam_ids],
                np.array([objects[i].center for i in cam_ids]),
                T_cam_base,
                model,
                radar["sensor_xy"],
            )
            result.update(zip(cam_ids, ev, strict=True))
        return result

    def _track(self, stamp, det, kept, objects, radar_assoc, degraded) -> dict[int, Any]:
        base, fixed = self.params["frames.base"], self.params["frames.fixed"]
        try:
            T_fixed_base = self.tf.lookup(fixed, base, stamp)
            self._tracking_frame = fixed
        except TransformError:
            T_fixed_base = np.eye(4)
            self._tracking_frame = base
            if "no_odometry" not in degraded:
                degraded.append("no_odometry")
        self._T_fixed_base = T_fixed_base
        ids = [i for i in kept if i in objects]
        measurements = []
        for i in ids:
            obj = objects[i]
            xy = (T_fixed_base[:3, :3] @ obj.center + T_fixed_base[:3, 3])[:2]
            ev = radar_assoc.get(i)
            los = None
            vr = float("nan")
            if ev is not None and np.isfinite(ev.radial_velocity):
                u = obj.center[:2] / max(np.linalg.norm(obj.center[:2]), 1e-6)
                los = T_fixed_base[:2, :2] @ u
                vr = ev.radial_velocity
            measurements.append(
                Measurement(
                    xy,
                    det.class_names[det.class_ids[i]],
                    float(det.scores[i]),
                    obj.source,
                    vr,
                    los,
                    i,
                )
            )
        self.tracker.step(stamp, measurements)
        return dict(zip(ids, self.tracker.assignment, strict=True))

    # -- outputs -------------------------------------------------------------------------
    def _scene(
        self,
        frame,
        camera,
        cam_frame,
        det,
        decisions,
        kept,
        objects,
        radar_assoc,
        tracked,
        degraded,
        drivable=None,
    ) -> dict[str, Any]:
        base = self.params["frames.base"]
        ego = self._ego_velocity(frame.stamp_ns)
        R_base_fixed = self._T_fixed_base[:3, :3].T
        objs = []
        for i in kept:
            d = decisions[i]
            obj = objects.get(i)
            track = tracked.get(i)
            sensors = ["camera"]
            if obj is not None and obj.source == "lidar":
                sensors.append("lidar")
            ev = radar_assoc.get(i)
            if ev is not None and ev.count:
                sensors.append("radar")
            velocity = speed = range_rate = None
            if (
                track is not None
                and track.confirmed
                and obj is not None
                and (track.velocity_observed or track.hits >= 3)
            ):
                v_base = R_base_fixed[:2, :2] @ track.velocity
                velocity = [round(float(v_base[0]), 3), round(float(v_base[1]), 3)]
                speed = round(float(np.hypot(*v_base)), 3)
                if self._tracking_frame != base:
                    rel = v_base - (ego[0][:2] if ego is not None else 0.0)
                else:  # tracked in base_link: velocities are already relative to the ego
                    rel = v_base
                u = obj.center[:2] / max(np.linalg.norm(obj.center[:2]), 1e-6)
                range_rate = round(float(rel @ u), 3)
            objs.append(
                {
                    "track_id": track.track_id if track is not None else None,
                    "confirmed": bool(track is not None and track.confirmed),
                    "class": det.class_names[det.class_ids[i]],
                    "score": round(float(det.scores[i]), 4),
                    "consistency": {
                        "reason": d.reason,
                        "semantic": _num(d.semantic),
                        "lidar": _num(d.lidar),
                        "radar": _num(d.radar),
                        "evidence": _num(d.evidence),
                    },
                    "box_2d": [round(float(v), 2) for v in det.boxes[i]],
                    "center": [round(float(v), 3) for v in obj.center] if obj else None,
                    "size": [round(float(v), 3) for v in obj.size] if obj else None,
                    "yaw": round(float(obj.yaw), 4) if obj else None,
                    "range_m": round(obj.range_m, 3) if obj else None,
                    "bearing_deg": round(bearing_deg(obj.center[0], obj.center[1]), 2)
                    if obj
                    else None,
                    "velocity": velocity,
                    "speed_mps": speed,
                    "range_rate_mps": range_rate,
                    "sensors": sensors,
                    "source": obj.source if obj else "image_only",
                }
            )
        sensors = {"camera": {"present": True, "stamp_ns": frame.stamp_ns, "skew_ms": 0.0}}
        for name in ("lidar", "radar"):
            part = frame.partners.get(name)
            sensors[name] = {
                "present": part is not None,
                "stamp_ns": part.stamp_ns if part else None,
                "skew_ms": round(part.skew_ns / 1e6, 3) if part else None,
            }
        latency = {
            k: round(v[-1], 3)
            for k, v in self.timings.items()
            if k in ("detector", "segmenter", "align", "filter", "fusion3d", "tracking")
        }
        return {
            "schema": SCHEMA_ID,
            "stamp_ns": frame.stamp_ns,
            "frame_id": base,
            "camera_frame_id": cam_frame,
            "tracking_frame": self._tracking_frame,
            "sensors": sensors,
            "degraded": sorted(set(degraded)),
            "objects": objs,
            "drivable_area": drivable,
            "latency_ms": latency,
            "models": {
                "detector": self.detector.manifest.name,
                "segmenter": self.segmenter.manifest.name if self.segmenter else None,
                "embedded_default": self.embedded_default,
            },
        }

    def _messages(
        self,
        stamp,
        cam_frame,
        base,
        det,
        decisions,
        kept,
        objects,
        tracked,
        scene,
        text,
        seg,
        camera,
    ) -> list[Output]:
        f, p = self.factory, self.params
        names = det.class_names

        def boxes(topic: str, rows: list[int], ids: list[str]) -> Output:
            return Output(
                topic,
                out.detection2d_array(
                    f,
                    stamp_ns=stamp,
                    frame_id=cam_frame,
                    boxes_xyxy=det.boxes[rows],
                    class_ids=[names[det.class_ids[i]] for i in rows],
                    scores=det.scores[rows],
                    ids=ids,
                ),
                stamp,
            )

        msgs = [
            boxes(
                "detections_2d",
                kept,
                [str(tracked[i].track_id) if i in tracked else "" for i in kept],
            )
        ]
        if p["output.rejected"]:
            rej = [i for i, d in enumerate(decisions) if not d.keep]
            msgs.append(
                boxes(
                    "rejected_2d",
                    rej,
                    [f"{decisions[i].reason}:{decisions[i].evidence:.2f}" for i in rej],
                )
            )
        with3d = [i for i in kept if i in objects]
        centers = np.array([objects[i].center for i in with3d]).reshape(-1, 3)
        sizes = np.array([objects[i].size for i in with3d]).reshape(-1, 3)
        yaws = np.array([objects[i].yaw for i in with3d])
        labels = [names[det.class_ids[i]] for i in with3d]
        track_ids = [str(tracked[i].track_id) if i in tracked else "" for i in with3d]
        msgs.append(
            Output(
                "objects_3d",
                out.detection3d_array(
                    f,
                    stamp_ns=stamp,
                    frame_id=base,
                    centers=centers,
                    sizes=sizes,
                    yaws=yaws,
                    class_ids=labels,
                    scores=[float(det.scores[i]) for i in with3d],
                    ids=track_ids,
                ),
                stamp,
            )
        )
        msgs.append(
            Output(
                "markers",
                out.box_markers(
                    f,
                    stamp_ns=stamp,
                    frame_id=base,
                    centers=centers,
                    sizes=sizes,
                    yaws=yaws,
                    labels=[
                        f"{c} #{t}" if t else c for c, t in zip(labels, track_ids, strict=True)
                    ],
                ),
                stamp,
            )
        )
        msgs.append(Output("scene", out.string_msg(f, json.dumps(scene, sort_keys=True)), stamp))
        msgs.append(Output("scene_text", out.string_msg(f, text), stamp))
        if seg is not None and p["output.segmentation"]:
            msgs.append(
                Output(
                    "segmentation",
                    array_to_image(
                        seg.labels, "mono8", factory=f, stamp_ns=stamp, frame_id=cam_frame
                    ),
                    stamp,
                )
            )
            if not self._label_info_sent:
                msgs.append(
                    Output(
                        "label_info",
                        out.label_info(
                            f, stamp_ns=stamp, frame_id=cam_frame, class_names=seg.class_names
                        ),
                        stamp,
                    )
                )
                self._label_info_sent = True
        if p["output.debug_image"]:
            from .overlay import draw_overlay

            image = draw_overlay(camera.bgr, scene, seg.labels if seg is not None else None)
            msgs.append(
                Output(
                    "debug_image",
                    array_to_image(image, "bgr8", factory=f, stamp_ns=stamp, frame_id=cam_frame),
                    stamp,
                )
            )
        period = int(p["diagnostics.period_s"] * NS)
        if self._last_diag_ns is None or stamp - self._last_diag_ns >= period:
            self._last_diag_ns = stamp
            msgs.append(
                Output(
                    "/diagnostics",
                    out.diagnostic_array(f, stamp_ns=stamp, statuses=self.diagnostics()),
                    stamp,
                )
            )
        return msgs

    # -- reporting -----------------------------------------------------------------------
    def accounting(self) -> dict[str, dict[str, Any]]:
        """Per input topic: received, used, dropped by reason (sync outcomes folded in)."""
        sensor_topic: dict[str, str] = {}
        for topic, role in self._topic_role.items():
            if role in ("camera", "lidar", "radar") and self.stats[topic].received:
                sensor_topic[role] = topic
        report: dict[str, dict[str, Any]] = {}
        for topic, stats in self.stats.items():
            outcomes = Counter(stats.outcomes)
            role = self._topic_role.get(topic)
            if role in sensor_topic and sensor_topic[role] == topic:
                for outcome, n in self.sync.counts[role].items():
                    outcomes[outcome.value if isinstance(outcome, Outcome) else outcome] += n
                pending = self.sync.pending().get(role, 0)
                if pending:
                    outcomes["pending"] += pending
            used = outcomes.pop("used", 0)
            report[topic] = {
                "role": role,
                "in": stats.received,
                "used": used,
                "dropped": dict(sorted(outcomes.items())),
            }
        return report

    def diagnostics(self) -> list[out.StatusReport]:
        statuses = []
        for topic, row in sorted(self.accounting().items()):
            level = out.WARN if sum(row["dropped"].values()) > row["used"] else out.OK
            statuses.append(
                out.StatusReport(
                    f"multimodal_perception: input {topic}",
                    level,
                    f"{row['in']} in, {row['used']} used",
                    values={
                        "in": row["in"],
                        "used": row["used"],
                        **{f"dropped.{k}": v for k, v in row["dropped"].items()},
                    },
                )
            )
        stage_ms = {
            f"{k}.ms_median": f"{np.median(v[-100:]):.2f}" for k, v in self.timings.items() if v
        }
        if self.multimodal is not None:
            st, cache = self.multimodal.stats, self.multimodal.cache
            statuses.append(
                out.StatusReport(
                    "multimodal_perception: multimodal model",
                    out.WARN if st.errors else out.OK,
                    f"{self.multimodal.backend.name}: {st.model_calls} calls",
                    values={
                        "offered": st.offered,
                        "skipped_rate": st.skipped_rate,
                        "superseded": st.superseded,
                        "model_calls": st.model_calls,
                        "errors": st.errors,
                        "questions": st.questions,
                        "cache_hit_rate": f"{cache.hit_rate:.3f}",
                        "cache_saved_s": f"{cache.saved_s:.3f}",
                    },
                )
            )
        statuses.append(
            out.StatusReport(
                "multimodal_perception: pipeline",
                out.OK,
                f"{self.frames} frames",
                values={"frames": self.frames, **stage_ms},
            )
        )
        return statuses


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / max(smaller, 1e-9))


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)
