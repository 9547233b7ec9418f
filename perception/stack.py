"""The models of one pipeline, loaded from the parameters: detector, segmenter, lanes.

Names come from ``models.detector`` / ``models.segmenter`` / ``models.lanes`` or the
defaults for the model directory (``perception.models``); each is checked against its
manifest's task. Without a real model directory the project-trained tiny models load,
and ``embedded_default`` says so wherever results are reported.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .detector import Band, Detections, Detector, TilingConfig
from .models import default_model, load_model, model_directory, resolve_model_path
from .reshape import FittedSegmenterInput
from .runtime import ModelLoadError, RuntimeOptions
from .segmenter import BoxSource, Segmentation, Segmenter

log = logging.getLogger("multimodal_perception.models")

BoxesOf = Callable[[Detections], np.ndarray]  # the detections -> the boxes worth a window


def _all_boxes(detections: Detections) -> np.ndarray:
    return detections.boxes


@dataclass
class ModelStack:
    detector: Detector
    segmenter: Segmenter | None
    lanes: Segmenter | None
    embedded_default: bool
    parallel: bool = False  # detector and segmenter in parallel (onnxruntime frees the GIL)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _detector_pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def start_segmenter(self, bgr: np.ndarray, boxes: BoxSource | None = None) -> Future | None:
        """Start segmenting ``bgr`` on the stack's worker thread when running in
        parallel (the caller detects meanwhile and then takes ``.result()``); None when
        sequential or without a segmenter. ``boxes``: for ``segmenter.mode: regions``."""
        if not self.parallel or self.segmenter is None:
            return None
        return self._worker().submit(self.segmenter.segment, bgr, boxes)

    @property
    def wants_boxes(self) -> bool:
        """The segmenter refines around the detector's boxes (``regions``)."""
        return self.segmenter is not None and self.segmenter.mode == "regions"

    def start_frame(
        self, bgr: np.ndarray, band: Band = None, boxes_of: BoxesOf = _all_boxes
    ) -> tuple[Future, Future | None]:
        """Both models on a frame ahead of its fusion (parallel stacks only): the detector
        on its worker, the segmenter on its own, given ``boxes_of`` the detections (the
        boxes the filter will judge) when it refines around them."""
        detecting = self.start_detector(bgr, band)
        assert detecting is not None
        boxes = (lambda: boxes_of(detecting.result())) if self.wants_boxes else None
        return detecting, self.start_segmenter(bgr, boxes)

    def run_frame(
        self, bgr: np.ndarray, band: Band = None, boxes_of: BoxesOf = _all_boxes
    ) -> tuple[Detections, Future | None]:
        """Detect on this thread, the segmenter on its worker meanwhile when parallel
        (handed the boxes when they are there, for ``regions``); the pending segmentation,
        or None (then ``segment_now``)."""
        if not self.wants_boxes:
            pending = self.start_segmenter(bgr)
            return self.detector(bgr, band), pending
        boxes: Future = Future()
        pending = self.start_segmenter(bgr, boxes.result)
        try:
            raw = self.detector(bgr, band)
            boxes.set_result(boxes_of(raw))
        except BaseException as exc:  # the worker must not wait for boxes that never come
            boxes.set_exception(exc)
            raise
        return raw, pending

    def segment_now(
        self, bgr: np.ndarray, raw: Detections, boxes_of: BoxesOf = _all_boxes
    ) -> Segmentation | None:
        """Sequential stacks: the segmentation after the detection."""
        if self.segmenter is None:
            return None
        return self.segmenter.segment(bgr, boxes_of(raw) if self.wants_boxes else None)

    def start_detector(self, bgr: np.ndarray, band: Band = None) -> Future | None:
        """Start detecting on a worker of its own (a frame run ahead: ``FrameCore.prefetch``,
        while the caller fuses the frame before); None when sequential. Its own worker:
        with tiled models each takes hundreds of ms, one after the other would add up."""
        if not self.parallel:
            return None
        if self._detector_pool is None:
            self._detector_pool = ThreadPoolExecutor(1, thread_name_prefix="mmp-detector")
        return self._detector_pool.submit(self.detector, bgr, band)

    def prepare(self, width: int, height: int) -> None:
        """A camera of this size is coming (its CameraInfo arrived): build the segmenter's
        session for that size now, on the worker when there is one, not on the first frame."""
        if self.segmenter is None or self.segmenter.fit is None:
            return
        jobs = [lambda: self.segmenter.fit(width, height)]
        if self.wants_boxes:  # and the windows' square session
            jobs.append(self.segmenter.region_session)
        for job in jobs:
            if self.parallel:
                self._worker().submit(job)
            else:
                job()

    def close(self) -> None:
        """Stop the worker threads, after the work they were given (a node being destroyed,
        a replay ending: a process that makes pipelines one after another, like a component
        container or a test run, would otherwise keep two threads per stack it made). The
        stack stays usable: a later parallel call starts its worker again."""
        for pool in (self._pool, self._detector_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._detector_pool = None

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mmp-segmenter")
        return self._pool

    @property
    def label_space(self) -> str:
        if self.segmenter is None:
            return "cityscapes"
        return self.segmenter.manifest.decoder_params.get("label_space", "cityscapes")

    @property
    def filter_thresholds(self) -> dict[str, float]:
        """The segmenter manifest's calibrated filter thresholds, per class, when this
        detector is one they were fitted with (they judge that detector's boxes); else
        none, and the filter's defaults apply."""
        if self.segmenter is None:
            return {}
        seg = self.segmenter.manifest
        if self.detector.manifest.name not in seg.filter_thresholds_for:
            return {}
        return dict(seg.filter_thresholds)

    def describe(self) -> dict[str, Any]:
        return {
            "detector": self.detector.manifest.name,
            "segmenter": self.segmenter.manifest.name if self.segmenter else None,
            "embedded_default": self.embedded_default,
        }

    def drivable(self, bgr: np.ndarray) -> dict[str, Any] | None:
        """Drivable-area and lane-line summary from a lanes model (TwinLiteNet)."""
        if self.lanes is None:
            return None
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


def _checked(name: str, task: str, key: str, directory: Any, options: RuntimeOptions) -> Any:
    manifest, backend = load_model(name, directory, options)
    if manifest.task != task:
        raise ModelLoadError(f"{key}={name!r} is a {manifest.task} model, not {task}")
    return manifest, backend


def thread_plan(threads: int, per_model: int, has_segmenter: bool) -> tuple[bool, int]:
    """(parallel, intra-op threads per session) for a budget of ``threads`` CPU threads
    (0 = every core): with two or more the detector and segmenter run in parallel, each
    session with half the budget, so the two sessions never ask for more threads than
    there are (replay's lookahead adds the thread fusing the frame before: on 2 cores
    three busy threads, measured faster than waiting); ``per_model`` (models.threads) > 0
    overrides the per-session count."""
    budget = threads if threads > 0 else (os.cpu_count() or 1)
    parallel = has_segmenter and budget >= 2
    intra = per_model if per_model > 0 else (max(1, budget // 2) if parallel else budget)
    return parallel, intra


def limit_blas_threads() -> None:
    """numpy's BLAS to one thread for the process. Its products here are N x 3 by 3 x k:
    threads never pay, and an idle OpenBLAS pool spins, taking the core the models' worker
    needs (on 2 cores: 3.4 s of 14.6 s CPU in a 40-frame replay)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def load_models(p: Any) -> ModelStack:
    """``p``: the pipeline's Parameters (``models.*``, ``detector.*``, ``segmenter.mode``,
    ``performance.threads``). Also holds numpy's BLAS to one thread (``limit_blas_threads``)."""
    limit_blas_threads()
    directory = model_directory(p["models.directory"] or None)
    parallel, intra = thread_plan(
        int(p["performance.threads"]), int(p["models.threads"]), p["models.segmenter"] != "none"
    )
    options = RuntimeOptions(
        providers=tuple(s.strip() for s in p["models.providers"].split(",")),
        intra_op_threads=intra,
    )
    det_name = p["models.detector"] or default_model("detection", directory)
    manifest, backend = load_model(det_name, directory, options)
    threshold = p["detector.score_threshold"]
    tiling = TilingConfig(
        enabled=bool(p["detector.tiling"]),
        size=int(p["detector.tile_size"]) or None,
        overlap=float(p["detector.tile_overlap"]),
        region=p["detector.tile_region"],
    )
    detector = Detector(manifest, backend, threshold if threshold >= 0 else None, tiling)
    segmenter = None
    seg_name = p["models.segmenter"] or default_model("segmentation", directory)
    if seg_name != "none":
        seg_manifest, seg_backend = _checked(
            seg_name, "segmentation", "models.segmenter", directory, options
        )
        segmenter = Segmenter(
            seg_manifest, seg_backend, mode=p["segmenter.mode"],
            max_regions=int(p["segmenter.max_regions"]),
        )  # fmt: skip
        seg_path = resolve_model_path(seg_manifest, directory)
        if (
            seg_manifest.input.fit_stride
            and seg_path.suffix == ".onnx"
            and segmenter.mode in ("letterbox", "regions")
        ):
            segmenter.fit = FittedSegmenterInput(seg_manifest, seg_path, options)
    lanes = None
    if p["models.lanes"]:
        lanes_manifest, lanes_backend = _checked(
            p["models.lanes"], "lanes", "models.lanes", directory, options
        )
        lanes = Segmenter(lanes_manifest, lanes_backend)
    if manifest.trained_by_project:
        log.warning(
            "no real model directory: using the project-trained models %s / %s, "
            "trained on the synthetic world only",
            det_name,
            seg_name,
        )
    stack = ModelStack(
        detector, segmenter, lanes, manifest.trained_by_project, parallel and segmenter is not None
    )
    if segmenter is not None and segmenter.manifest.filter_thresholds:
        if stack.filter_thresholds:
            log.info("filter thresholds of %s: %s", seg_name, stack.filter_thresholds)
        else:
            log.warning(
                "filter thresholds of %s were fitted with %s, not %s: filter.default_threshold "
                "applies (mmp calibrate-filter fits them for this pair)",
                seg_name,
                ", ".join(segmenter.manifest.filter_thresholds_for),
                det_name,
            )
    if segmenter is not None and segmenter.fit is not None and stack.parallel:
        # `import onnx` takes ~1 s: on the worker now, not when the first camera arrives.
        stack._worker().submit(importlib.import_module, "onnx")
    return stack
