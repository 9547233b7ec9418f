"""2D detection: encoder, inference and decoder as separate stages, single-pass or tiled.

``Detector.detect(bgr)`` runs the model once on the whole frame; ``detect_tiled`` adds
overlapping square tiles (batched into one call when the model takes a batch; with
``region: horizon`` only over the band of rows where distant road users can be), drops
boxes cut by inner tile edges, maps everything to original pixels and merges with
class-aware NMS. Timings per stage are kept for the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .decoders import DETECTION_DECODERS, RawDetections, class_aware_nms
from .manifest import ModelManifest
from .preprocess import Resize, resize_image, to_tensor
from .runtime import Backend
from .tiling import band_tiles, touches_inner_edge


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2, original image pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64 into ``class_names``
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.boxes)

    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.class_ids]

    @staticmethod
    def empty(class_names: tuple[str, ...]) -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            class_names,
        )


@dataclass
class StageTimes:
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    calls: int = 0

    def add(self, other: StageTimes) -> None:
        self.preprocess_ms += other.preprocess_ms
        self.inference_ms += other.inference_ms
        self.postprocess_ms += other.postprocess_ms
        self.calls += other.calls


@dataclass
class TilingConfig:
    enabled: bool = False
    size: int | None = None  # pixels; None: the short side, at most 1.5x the model input
    overlap: float = 0.25
    include_full_frame: bool = True
    merge_iou: float = 0.5
    # "frame": tiles over all of it; "horizon": only over the rows given as the frame's
    # band (where distant, small road users can be), grown to one tile's height.
    region: str = "frame"


# Image rows (top, bottom) where small objects can be: ``fusion.projection.horizon_band``.
Band = tuple[int, int] | None


@dataclass
class Detector:
    manifest: ModelManifest
    backend: Backend
    score_threshold: float | None = None
    tiling: TilingConfig = field(default_factory=TilingConfig)
    last_times: StageTimes = field(default_factory=StageTimes)

    def __post_init__(self) -> None:
        self._decode = DETECTION_DECODERS[self.manifest.decoder]
        self._params = dict(self.manifest.decoder_params)
        if self.score_threshold is not None:
            self._params["score_threshold"] = self.score_threshold
        batch = self.backend.input_shapes[0][0]
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else 16

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.manifest.classes

    def set_score_threshold(self, threshold: float) -> None:
        self._params["score_threshold"] = float(threshold)

    def _infer(
        self, crops: list[np.ndarray], times: StageTimes
    ) -> list[tuple[RawDetections, Resize]]:
        spec = self.manifest.input
        out: list[tuple[RawDetections, Resize]] = []
        for start in range(0, len(crops), self.max_batch):
            chunk = crops[start : start + self.max_batch]
            t0 = time.perf_counter()
            resized = [resize_image(c, spec) for c in chunk]
            tensor = to_tensor([r[0] for r in resized], spec)
            t1 = time.perf_counter()
            outputs = self.backend.run({self.backend.input_names[0]: tensor})
            t2 = time.perf_counter()
            raws = self._decode(outputs[0], spec.width, spec.height, self._params)
            t3 = time.perf_counter()
            times.preprocess_ms += (t1 - t0) * 1e3
            times.inference_ms += (t2 - t1) * 1e3
            times.postprocess_ms += (t3 - t2) * 1e3
            times.calls += 1
            out += [(raw, r[1]) for raw, r in zip(raws, resized, strict=True)]
        return out

    def detect(self, bgr: np.ndarray) -> Detections:
        times = StageTimes()
        ((raw, resize),) = self._infer([bgr], times)
        t0 = time.perf_counter()
        boxes = _clip(resize.boxes_to_original(raw.boxes), bgr.shape)
        times.postprocess_ms += (time.perf_counter() - t0) * 1e3
        self.last_times = times
        return Detections(boxes, raw.scores, raw.class_ids, self.class_names)

    def detect_tiled(self, bgr: np.ndarray, band: Band = None) -> Detections:
        """Tiles plus the full frame; with ``region: horizon`` and a ``band``, tiles only
        over those rows (grown to a tile's height, centred), the full frame for the rest."""
        h, w = bgr.shape[:2]
        cfg = self.tiling
        size = cfg.size
        if size is None:
            spec = self.manifest.input
            size = min(min(w, h), round(1.5 * max(spec.width, spec.height)))
        tiles = band_tiles(w, h, size, cfg.overlap, band if cfg.region == "horizon" else None)
        whole = len(tiles) == 1 and (tiles[0].x1 - tiles[0].x0, tiles[0].y1 - tiles[0].y0) == (w, h)
        crops = [bgr[t.y0 : t.y1, t.x0 : t.x1] for t in tiles]
        if cfg.include_full_frame and not whole:
            crops.append(bgr)
        times = StageTimes()
        results = self._infer(crops, times)
        t0 = time.perf_counter()
        boxes, scores, classes = [], [], []
        for i, (raw, resize) in enumerate(results):
            b = resize.boxes_to_original(raw.boxes)
            if i < len(tiles) and not whole:
                tile = tiles[i]
                b[:, [0, 2]] += tile.x0
                b[:, [1, 3]] += tile.y0
                keep = ~touches_inner_edge(b, tile, w, h)
                b, s, c = b[keep], raw.scores[keep], raw.class_ids[keep]
            else:
                s, c = raw.scores, raw.class_ids
            boxes.append(b)
            scores.append(s)
            classes.append(c)
        all_boxes = _clip(np.concatenate(boxes), bgr.shape)
        all_scores, all_classes = np.concatenate(scores), np.concatenate(classes)
        keep = class_aware_nms(all_boxes, all_scores, all_classes, cfg.merge_iou)
        times.postprocess_ms += (time.perf_counter() - t0) * 1e3
        self.last_times = times
        return Detections(all_boxes[keep], all_scores[keep], all_classes[keep], self.class_names)

    def __call__(self, bgr: np.ndarray, band: Band = None) -> Detections:
        return self.detect_tiled(bgr, band) if self.tiling.enabled else self.detect(bgr)


def _clip(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    boxes = boxes.reshape(-1, 4)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, shape[1])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, shape[0])
    return boxes
