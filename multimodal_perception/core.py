"""The frame core: ``FrameCore.step(SyncedFrame) -> FrameResult``, the data path itself.

Pure data in, data out: no messages, no I/O, no wall clock (stage timings come from an
injected clock). The stages, in order, each owned by its module:

1. detect         perception.detector    2D boxes of the wanted classes
2. segment        perception.segmenter   class-id image (and lanes, when configured)
3. project        fusion.fusion3d        lidar: ground removed, projected; radar projected
4. filter         fusion.consistency     keep or reject each box, with a reason
                  fusion.box_evidence    (lidar and radar evidence per box)
5. fuse 3D        fusion.objects         a 3D object per kept box, duplicates merged,
                                         radar returns associated
6. track          tracking_stage         Kalman + Hungarian in the fixed frame
                  (fusion.tracking)
7. describe       scene, describe        the scene (mmp.scene/1) and its text

State across frames: the tracking stage (tracker and the frame it tracks in), and the
recent sweeps' ground planes (bounded; the last one places the horizon tiles of a frame
without lidar). A camera rig runs one core per camera, all sharing one tracking stage and
one ground cache. Everything else is per frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace

import numpy as np

from .config import Parameters, threshold_key
from .describe import describe_scene
from .frame import FrameResult, SyncedFrame
from .fusion.box_evidence import lidar_box_evidence, radar_box_evidence
from .fusion.carry import MovingRegion, carry_points, mark_carried, moving_regions
from .fusion.consistency import CLASS_MAPS, ConsistencyFilter, Decision, FilterConfig
from .fusion.fusion3d import LidarFrame, points_in_base, prepare_lidar
from .fusion.ground import GroundModel, fit_ground
from .fusion.objects import (
    associate_radar,
    build_objects,
    deduplicate,
    labels_under_points,
    pair_riders,
    rider_object,
)
from .fusion.projection import Projection, horizon_band, project_points
from .fusion.tracking import Tracker
from .perception.detector import Detections
from .perception.segmenter import Segmentation
from .perception.stack import ModelStack
from .scene import build_scene
from .tracking_stage import TrackingStage

GROUND_CACHE_SWEEPS = 8  # a rig's cameras use sweeps within a cycle of each other


def filter_config(
    p: Parameters, label_space: str, calibrated: Mapping[str, float] | None = None
) -> FilterConfig:
    """The filter's settings: per class the ``filter.threshold.<class>`` parameter, or
    where it is negative (the default -1.0) the ``calibrated`` value (the segmenter
    manifest's, ``ModelStack.filter_thresholds``), else ``filter.default_threshold``:
    thresholds belong to the models they were fitted for."""
    # Parameter names spell "traffic light" as traffic_light; the filter uses class names.
    names = {threshold_key(c): c for c in CLASS_MAPS.get(label_space, {})}
    thresholds = dict(calibrated or {})
    for k, v in p.values.items():
        if k.startswith("filter.threshold.") and v >= 0:
            key = k.rsplit(".", 1)[1]
            thresholds[names.get(key, key)] = v
    return FilterConfig(
        label_space=label_space,
        default_threshold=p["filter.default_threshold"],
        thresholds=thresholds,
        enabled=bool(p["filter.enabled"]),
    )


def select_classes(
    det: Detections, wanted: set[str], min_score: float = -1.0
) -> tuple[Detections, Detections]:
    """The detections of the wanted classes (all when ``wanted`` is empty) scoring at
    least ``min_score`` (a rig camera's own threshold), and the others."""
    keep = det.scores >= min_score
    if wanted:
        keep &= np.array([det.class_names[c] in wanted for c in det.class_ids], dtype=bool)

    def rows(mask: np.ndarray) -> Detections:
        return Detections(det.boxes[mask], det.scores[mask], det.class_ids[mask], det.class_names)

    return rows(keep), rows(~keep)


class _Laps:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.t = clock()
        self.ms: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self.clock()
        self.ms[name] = (now - self.t) * 1e3
        self.t = now


class FrameCore:
    def __init__(
        self,
        params: Parameters,
        models: ModelStack,
        clock: Callable[[], float] = time.perf_counter,
        tracking: TrackingStage | None = None,
        min_score: float = -1.0,
        ground_cache: dict[int, GroundModel | None] | None = None,
    ) -> None:
        """``tracking``: a rig's shared tracking stage (default: this core's own);
        ``min_score``: a rig camera's detector threshold (-1: the global one);
        ``ground_cache``: a rig's ground planes by lidar sweep stamp, shared."""
        self.params = params
        self.models = models
        self.clock = clock
        self.filter = ConsistencyFilter(
            models.detector.class_names,
            models.segmenter.class_names if models.segmenter else (),
            filter_config(params, models.label_space, models.filter_thresholds),
        )
        self.shared_tracking = tracking is not None
        self.tracking = tracking if tracking is not None else TrackingStage(params)
        self.min_score = min_score
        self.ground_cache = ground_cache
        self._prefetched: dict[int, tuple[SyncedFrame, Future, Future | None]] = {}
        self._ground: GroundModel | None = None  # the last lidar's, for the horizon band
        self._own_grounds: dict[int, GroundModel | None] = {}  # by sweep, without a rig's

    def prefetch(self, frame: SyncedFrame) -> None:
        """Start both models on ``frame`` now, ahead of its ``step`` (replay's one-frame
        lookahead: the models' workers run the next frame while this thread fuses the
        current one). A no-op when the models run one after the other."""
        if self.models.parallel:  # the frame pins its id
            detecting, segmenting = self.models.start_frame(
                frame.image, self._band(frame), self._judged_boxes
            )
            self._prefetched[id(frame)] = (frame, detecting, segmenting)

    def _band(self, frame: SyncedFrame) -> tuple[int, int] | None:
        """``detector.tile_region: horizon``: the rows where road users beyond
        ``detector.horizon_near_m`` can be, on the ground plane of the frame's sweep (the
        last one known for a frame without lidar; None before any: tiles over the whole
        frame)."""
        p = self.params
        if not p["detector.tiling"] or p["detector.tile_region"] != "horizon":
            return None
        if frame.camera is None or frame.T_cam_base is None:
            return None
        ground = self._sweep_ground(frame)
        if ground is None:
            return None
        near = float(p["detector.horizon_near_m"])
        return horizon_band(frame.camera, frame.T_cam_base, ground, near)

    def _judged_boxes(self, raw: Detections) -> np.ndarray:
        """The boxes the filter will judge (the wanted classes, above this camera's score):
        where ``segmenter.mode: regions`` spends its windows."""
        return select_classes(raw, self.wanted, self.min_score)[0].boxes

    def _grounds(self) -> dict[int, GroundModel | None]:
        return self.ground_cache if self.ground_cache is not None else self._own_grounds

    def _sweep_ground(self, frame: SyncedFrame) -> GroundModel | None:
        """The ground plane of the frame's sweep, fitted now (before the detector) and
        kept for ``_project``; the last one known when the frame has no lidar."""
        sweep = frame.partners["lidar"].stamp_ns if "lidar" in frame.partners else None
        if frame.lidar is None or sweep is None:
            return self._ground
        grounds = self._grounds()
        if sweep not in grounds:
            base = points_in_base(frame.lidar.xyz, frame.lidar.T_base_lidar)
            self._remember_ground(sweep, fit_ground(base))
        return grounds[sweep] or self._ground

    def _remember_ground(self, sweep: int, ground: GroundModel | None) -> None:
        """Keep a sweep's plane (for this frame's stages and a rig's other cameras), the
        cache held to ``GROUND_CACHE_SWEEPS``."""
        grounds = self._grounds()
        grounds[sweep] = ground
        while len(grounds) > GROUND_CACHE_SWEEPS:
            del grounds[next(iter(grounds))]

    @property
    def tracker(self) -> Tracker:
        return self.tracking.tracker

    def update_parameters(self, params: Parameters) -> None:
        """Run-time changes: filter thresholds, score threshold, tracking, description."""
        self.params = params
        self.filter.config = filter_config(
            params, self.filter.config.label_space, self.models.filter_thresholds
        )
        if params["detector.score_threshold"] >= 0:
            self.models.detector.set_score_threshold(params["detector.score_threshold"])
        self.tracking.update_parameters(params)

    def reset_time(self) -> None:
        """Header time went backwards: drop the tracks, keep the ids unique."""
        self.tracking.reset()

    @property
    def wanted(self) -> set[str]:
        return {c.strip() for c in self.params["detector.classes"].split(",") if c.strip()}

    # -- the stages ----------------------------------------------------------------------
    def step(self, frame: SyncedFrame) -> FrameResult:
        p = self.params
        laps = _Laps(self.clock)
        degraded = list(frame.degraded)
        # In parallel the segmenter runs on the stack's worker (started here, or already by
        # ``prefetch``) while this thread detects and prepares the lidar; its lap is then
        # the time still waited for it.
        prefetched = self._prefetched.pop(id(frame), None)
        if prefetched is not None and prefetched[0] is frame:
            raw = prefetched[1].result()
            pending = prefetched[2]
        else:
            raw, pending = self.models.run_frame(frame.image, self._band(frame), self._judged_boxes)
        det, others = select_classes(raw, self.wanted, self.min_score)
        laps.lap("detector")
        regions, age_s = self._moving_regions(frame)
        lidar, radar_proj = self._project(frame, regions)
        if lidar is not None and lidar.ground is not None:
            self._ground = lidar.ground
        laps.lap("project")
        if pending is not None:
            seg = pending.result()
        else:
            seg = self.models.segment_now(frame.image, raw, self._judged_boxes)
        laps.lap("segmenter")
        drivable = self.models.drivable(frame.image)
        if drivable is not None:
            laps.lap("lanes")
        decisions = self._judge(det, seg, lidar, radar_proj, frame)
        laps.lap("filter")
        classes = det.labels()
        kept = [i for i, d in enumerate(decisions) if d.keep]
        mask_ok = {}
        if lidar is not None and seg is not None and kept:
            under = labels_under_points(lidar, seg.labels)
            by_class: dict[int, np.ndarray | None] = {}  # boxes of a class share their mask
            for i in kept:
                cid = int(det.class_ids[i])
                if cid not in by_class:
                    lut = self.filter.luts[cid]
                    by_class[cid] = lut[under] > 0 if lut is not None else None
                mask_ok[i] = by_class[cid]
        T_base_cam = np.linalg.inv(frame.T_cam_base) if frame.T_cam_base is not None else None
        objects = build_objects(
            det.boxes, classes, kept, lidar, frame.camera, T_base_cam, mask_ok,
            float(p["fusion.dbscan_eps"]), p["fusion.vehicle_fit"],
        )  # fmt: skip
        kept, duplicates = deduplicate(det.boxes, det.scores, classes, kept, objects)
        objects = {i: objects[i] for i in kept if i in objects}
        # A rider and their bike: both 2D boxes stay, in 3D one cyclist on the bike's box.
        riders = pair_riders(det.boxes, classes, kept, objects)
        object_classes: dict[int, str] = {}
        for person, bike in riders.items():
            rider = objects.pop(person, None)
            if rider is not None:
                objects[bike] = rider_object(rider, objects[bike]) if bike in objects else rider
            object_classes[bike] = "cyclist"
        classes = [object_classes.get(i, c) for i, c in enumerate(classes)]
        if age_s > 0.0:  # an older sweep (sync policy latest): say so per object
            objects = mark_carried(objects, regions, age_s)
        radar = {}
        if frame.radar is not None:
            radar = associate_radar(
                det.boxes, kept, objects, frame.radar.xyz, frame.radar.radial_velocity,
                frame.radar.sensor_xy, frame.T_cam_base, frame.camera,
                float(p["fusion.radar_gate_m"]), radar_proj,
            )  # fmt: skip
        laps.lap("fusion3d")
        tracks = self.tracking.step(
            frame, classes, det.scores, kept, objects, radar, degraded, self.shared_tracking
        )
        laps.lap("tracking")
        scene = build_scene(
            frame, p["frames.base"], det, decisions, kept, objects, radar, tracks,
            self.tracking.frame, self.tracking.T_track_base, degraded, self.models.describe(),
            laps.ms, drivable, object_classes, riders,
        )  # fmt: skip
        text = describe_scene(scene, p["description.language"])
        laps.lap("describe")
        return FrameResult(
            stamp_ns=frame.stamp_ns,
            camera_frame=frame.camera_frame,
            image=frame.image,
            detections=det,
            decisions=decisions,
            kept=kept,
            duplicates=duplicates,
            objects=objects,
            object_classes=object_classes,
            riders=riders,
            radar=radar,
            tracks=tracks,
            tracking_frame=self.tracking.frame,
            segmentation=seg,
            scene=scene,
            text=text,
            timings_ms=laps.ms,
            unwanted=len(others),
            other_detections=others,
            degraded=tuple(sorted(set(degraded))),
            lidar_uv=lidar.projection.uv if lidar is not None else None,
            lidar_depth=lidar.projection.depth if lidar is not None else None,
            radar_uv=radar_proj.uv if radar_proj is not None else None,
        )

    def _moving_regions(self, frame: SyncedFrame) -> tuple[list[MovingRegion], float]:
        """Under the latest policy, the moving tracks whose points in the older sweep are
        carried to the camera stamp (``fusion.carry``), and the sweep's age in seconds."""
        part = frame.partners.get("lidar")
        if frame.lidar is None or part is None or not part.extrapolated_ns:
            return [], 0.0
        age_s = part.extrapolated_ns / 1e9
        # Where the tracks will be this step (as TrackingStage.step decides): in the fixed
        # frame with this frame's odometry, in base_link without; tracks kept in the other
        # frame are about to be dropped or to coast, and carry nothing.
        tracking = self.tracking
        if frame.T_fixed_base is not None and tracking.frame == self.params["frames.fixed"]:
            T_track_base = frame.T_fixed_base
        elif frame.T_fixed_base is None and tracking.frame == self.params["frames.base"]:
            T_track_base = np.eye(4)
        else:
            return [], age_s
        tracker = tracking.tracker
        regions = moving_regions(tracker.tracks, tracker.stamp, part.stamp_ns, age_s, T_track_base)
        return regions, age_s

    def _project(
        self, frame: SyncedFrame, moving: list[MovingRegion]
    ) -> tuple[LidarFrame | None, Projection | None]:
        if frame.camera is None or frame.T_cam_base is None:
            return None, None
        lidar = None
        if frame.lidar is not None:
            # A rig's cameras share a sweep's ground plane (keyed by the sweep's stamp).
            sweep = frame.partners["lidar"].stamp_ns if "lidar" in frame.partners else None
            grounds = self._grounds()
            known = sweep in grounds
            lidar = prepare_lidar(
                frame.lidar.xyz, frame.lidar.T_base_lidar, frame.T_cam_base, frame.camera,
                ground=grounds[sweep] if known else True,
            )  # fmt: skip
            if moving:
                carried = carry_points(lidar.points_base, moving)
                if carried is not lidar.points_base:
                    projection = project_points(carried, frame.T_cam_base, frame.camera)
                    lidar = replace(lidar, points_base=carried, projection=projection)
            if not known and sweep is not None:
                self._remember_ground(sweep, lidar.ground)
        radar = None
        if frame.radar is not None and len(frame.radar.xyz):
            radar = project_points(frame.radar.xyz, frame.T_cam_base, frame.camera)
        return lidar, radar

    def _judge(
        self,
        det: Detections,
        seg: Segmentation | None,
        lidar: LidarFrame | None,
        radar: Projection | None,
        frame: SyncedFrame,
    ) -> list[Decision]:
        lidar_ev = radar_ev = np.zeros(len(det))
        if lidar is not None:
            lidar_ev = lidar_box_evidence(det.boxes, lidar.projection)
        if radar is not None and frame.radar is not None:
            radar_ev = radar_box_evidence(det.boxes, radar, frame.radar.radial_velocity)
        height, width = frame.image.shape[:2]
        labels = seg.labels if seg is not None else None
        return self.filter.decide(
            det.boxes, det.class_ids, labels, (width, height), lidar_ev, radar_ev
        )
