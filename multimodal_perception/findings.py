"""The open-vocabulary findings stage: what to look at in a frame, and the findings JSON.

An inspection operator names things outside the detector's classes
(``open_vocab.prompts``: a spill on the floor, an open cabinet door, ...). Per frame this
stage picks the crops worth scoring, on the sensor path and cheaply:

- detector boxes (kept or rejected by the filter) scoring below
  ``open_vocab.max_box_score``: the detector saw something it is unsure of;
- class-agnostic proposals the detector did not box: connected regions of the
  segmentation's thing classes, "unknown object" until scored (``proposal_crops``);
- with ``open_vocab.zones``, each inspection zone's image region: the zone's polygon with
  its height band, as a prism, projected through tf at the frame stamp and the camera
  model; its bounding rectangle clipped to the image. Zones out of view are skipped, zones
  tf cannot reach are skipped and reported (``unreachable``).

The scorer (``open_vocab.backend``, auto: CLIP where ``open_vocab.model_dir`` names a
directory, else the zero-shot ImageNet + WordNet scorer where the model directory holds
its classifier, ``perception/zero_shot.py``) runs on the open-vocabulary worker
(``perception/open_vocab.py``: off the sensor path,
rate-limited at ``open_vocab.rate_hz`` in header time, newest frame wins, dhash cache per
crop); :meth:`Findings.poll` returns what the worker finished. With prompts but no model,
a model that fails its checks (the node runs on without findings), prompts the model
cannot score, or a CLIP directory but no prompts, it warns once and reports it in
diagnostics; with neither prompts nor model it does nothing.

Findings JSON, schema ``mmp.findings/1`` (one message per finding, ``findings`` topic)::

    {"schema": "mmp.findings/1",
     "prompt": str,            # one of open_vocab.prompts
     "score": float,           # >= open_vocab.min_score. CLIP: softmax probability of the
                               # prompt against the other prompts and the background prompts;
                               # zero-shot: see "method"
     "box_2d": [x1, y1, x2, y2],   # int pixels of the crop in the camera image
     "source": {"kind": "box", "class": str, "score": float, "kept": bool}
             | {"kind": "zone", "zone": str}
             | {"kind": "proposal", "label": "unknown object", "segment": "segment:<class>"},
     "stamp_ns": int,          # header stamp of the frame scored
     "camera_frame": str,
     "backend": str,           # clip_onnx:<manifest name> | zero_shot:<classifier>+wordnet
     "method": str,            # clip | hierarchy | similarity (perception/zero_shot.py)
     "cached": bool}           # scores reused for a near-identical crop, no model call

New keys keep the version; a key removed or changed in meaning makes it ``mmp.findings/2``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np

from .config import Parameters
from .frame import FrameResult
from .fusion.projection import project_points
from .fusion.transforms import TransformError, TransformSource
from .fusion.zones import Zone
from .perception.models import model_directory
from .perception.multimodal import ResultCache
from .perception.open_vocab import (
    Crop,
    Finding,
    OpenVocabScorer,
    OpenVocabWorker,
    load_clip,
)
from .perception.proposals import segment_proposals
from .perception.runtime import ModelLoadError
from .perception.zero_shot import ZeroShotScorer, has_zero_shot_model, load_zero_shot
from .ros_pkg import outputs as out
from .ros_pkg.camera_info import CameraModel
from .ros_pkg.factory import MessageFactory
from .ros_pkg.frame_messages import Output

log = logging.getLogger("multimodal_perception.findings")

FINDINGS_SCHEMA = "mmp.findings/1"
NO_MODEL = (
    "open_vocab.prompts set but no image-text model: no CLIP directory (open_vocab.model_dir) "
    "and no mobilenet_v2_imagenet in the model directory (models.directory, MMP_MODEL_DIR): "
    "no findings"
)
NO_PROMPTS = "open_vocab.model_dir set but open_vocab.prompts is empty: no findings"
# Work per scored frame is bounded: zones first (the operator placed them), then boxes.
MAX_CROPS = 32
# Smaller crops are a few pixels upscaled to the encoder's 224: noise, not evidence.
MIN_CROP_PX = 16
# A zone without a height band ("any height") is taken as its polygon at z = 0 in its
# frame up to this height: what a camera on a ground robot inspects.
DEFAULT_HEIGHT_M = 2.0
_UNBOUNDED_M = 1e6


def parse_prompts(text: str) -> list[str]:
    """``open_vocab.prompts``: comma-separated, blanks and repeats dropped, order kept."""
    return list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def _clip_box(box: Any, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    if x2 - x1 < MIN_CROP_PX or y2 - y1 < MIN_CROP_PX:
        return None
    return x1, y1, x2, y2


def box_crops(result: FrameResult, max_box_score: float) -> list[Crop]:
    """Detector boxes, kept or rejected, scoring below ``max_box_score``, and every box
    of a class outside ``detector.classes`` (something the list does not name)."""
    det, kept = result.detections, set(result.kept)
    height, width = result.image.shape[:2]
    crops = []
    for i in range(len(det)):
        score = float(det.scores[i])
        box = _clip_box(det.boxes[i], width, height)
        if score >= max_box_score or box is None:
            continue
        cls = det.class_names[det.class_ids[i]]
        crops.append(Crop(box, "box", detector_class=cls, detector_score=score, kept=i in kept))
    other = result.other_detections
    for i in range(len(other) if other is not None else 0):
        box = _clip_box(other.boxes[i], width, height)
        if box is not None:
            cls, score = other.class_names[other.class_ids[i]], float(other.scores[i])
            crops.append(Crop(box, "box", detector_class=cls, detector_score=score, kept=False))
    return crops


def proposal_crops(result: FrameResult) -> list[Crop]:
    """Segmentation regions no detector box covers ("unknown object" until scored)."""
    seg = result.segmentation
    if seg is None:
        return []
    found = segment_proposals(seg.labels, seg.class_names, result.detections.boxes, MIN_CROP_PX)
    return [Crop(box, "proposal", detector_class=f"segment:{name}") for box, name in found]


def _height_band(zone: Zone) -> tuple[float, float]:
    lo, hi = zone.z_range
    if lo < -_UNBOUNDED_M and hi > _UNBOUNDED_M:
        return 0.0, DEFAULT_HEIGHT_M
    if lo < -_UNBOUNDED_M:
        return hi - DEFAULT_HEIGHT_M, hi
    if hi > _UNBOUNDED_M:
        return lo, lo + DEFAULT_HEIGHT_M
    return lo, hi


def prism_samples(zone: Zone, n: int = 24) -> np.ndarray:
    """(M, 3) points on the zone prism's surface, in the zone's frame: its sides (the
    polygon's edges at several heights) and its bottom and top (a grid inside the
    polygon). Sampling the surface, not only the corners, keeps a zone in view when all
    its corners are out of it (a camera inside a large zone, or a zone crossing the
    image plane)."""
    lo, hi = _height_band(zone)
    a = zone.polygon
    b = np.roll(a, -1, axis=0)
    t = np.linspace(0.0, 1.0, n, endpoint=False)[None, :, None]
    ring = (a[:, None, :] + (b - a)[:, None, :] * t).reshape(-1, 2)
    sides = [np.column_stack([ring, np.full(len(ring), z)]) for z in np.linspace(lo, hi, 8)]
    (x0, y0), (x1, y1) = a.min(axis=0), a.max(axis=0)
    grid = np.stack(np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n)), -1)
    grid = grid.reshape(-1, 2)
    flat = np.column_stack([grid, np.full(len(grid), lo)])
    inside = grid[zone.contains(flat)]
    caps = [np.column_stack([inside, np.full(len(inside), z)]) for z in (lo, hi)]
    return np.vstack(sides + caps)


def zone_region(
    zone: Zone, T_cam_zone: np.ndarray, camera: CameraModel
) -> tuple[int, int, int, int] | None:
    """The bounding rectangle, clipped to the image, of the zone prism's image; None when
    no part of it is in view (behind the camera, beside it, too small)."""
    # No pixel margin: points beyond the image border still count, so a prism that
    # crosses the border (or the image plane) reaches it; its rectangle is clipped below.
    proj = project_points(prism_samples(zone), T_cam_zone, camera, margin_px=math.inf)
    uv = proj.uv
    w, h = camera.width, camera.height
    seen = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    if not seen.any():  # the prism is around the image, not in it
        return None
    (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
    return _clip_box((u0, v0, u1, v1), w, h)


class Findings:
    """``offer`` each frame's result; ``poll`` the finished findings (JSON dicts)."""

    def __init__(self, params: Parameters) -> None:
        self.params = params
        self.prompts = parse_prompts(params["open_vocab.prompts"])
        model_dir = params["open_vocab.model_dir"]
        self.worker: OpenVocabWorker | None = None
        self.problem: str | None = None  # why there are no findings, for diagnostics
        self.latest: list[dict[str, Any]] = []  # the newest scored frame's findings
        self.unreachable: dict[str, str] = {}  # zone -> why it was not scored last frame
        kind = params["open_vocab.backend"]
        models = model_directory(params["models.directory"] or None)
        if kind == "auto":
            kind = "clip" if model_dir else "zero_shot" if has_zero_shot_model(models) else ""
        if self.prompts and not kind:
            self.problem = NO_MODEL
        elif model_dir and not self.prompts:
            self.problem = NO_PROMPTS
        elif self.prompts and kind == "clip":
            clip, manifest = load_clip(model_dir)  # fails fast, naming the file
            self._start(OpenVocabScorer(clip, self.prompts, manifest.background_prompts))
        elif self.prompts:
            try:
                scorer = load_zero_shot(self.prompts, models or "")
            except ModelLoadError as exc:  # the node runs on without findings, saying why
                self.problem = f"open-vocabulary findings off: {exc}"
            else:
                self._start(scorer)
                if scorer.unknown:
                    self.problem = "; ".join(f"{p!r}: {why}" for p, why in scorer.unknown.items())
        if self.problem:
            log.warning("%s", self.problem)

    def _start(self, scorer: OpenVocabScorer | ZeroShotScorer) -> None:
        # A frame has up to MAX_CROPS crops: the cache holds several frames' worth.
        cache = ResultCache(capacity=8 * MAX_CROPS)
        rate = self.params["open_vocab.rate_hz"]
        self.worker = OpenVocabWorker(scorer, rate_hz=rate, cache=cache)  # type: ignore[arg-type]
        log.info("open-vocabulary findings: %s, prompts %s", scorer.name, scorer.prompts)

    def update_parameters(self, params: Parameters) -> None:
        """min_score, max_box_score and zones apply from the next frame; the model, the
        prompts and the rate are read once, at start."""
        self.params = params

    def offer(
        self,
        result: FrameResult,
        tf: TransformSource,
        camera_model: CameraModel | None,
        zones: list[Zone] | tuple[Zone, ...] = (),
    ) -> None:
        """Pick the frame's crops and offer them to the worker; never waits."""
        if self.worker is None:
            return
        p = self.params
        crops: list[Crop] = []
        if self.worker.due(result.stamp_ns):  # else skipped by the rate: no crops to pick
            crops = (
                self._zone_crops(result, tf, camera_model, zones) if p["open_vocab.zones"] else []
            )
            crops += box_crops(result, p["open_vocab.max_box_score"]) + proposal_crops(result)
            if not crops:
                return
        self.worker.offer(
            result.stamp_ns,
            result.image,
            crops[:MAX_CROPS],
            result.camera_frame,
            p["open_vocab.min_score"],
        )

    def _zone_crops(
        self,
        result: FrameResult,
        tf: TransformSource,
        camera: CameraModel | None,
        zones: list[Zone] | tuple[Zone, ...],
    ) -> list[Crop]:
        if not zones:
            return []
        height, width = result.image.shape[:2]
        if camera is None or (camera.width, camera.height) != (width, height):
            why = "no CameraInfo of the image's size"
            self.unreachable = {z.name: why for z in zones}
            return []
        crops = []
        for zone in zones:
            try:
                T = tf.lookup(result.camera_frame, zone.frame, result.stamp_ns)
            except TransformError as exc:
                self.unreachable[zone.name] = f"{result.camera_frame} <- {zone.frame}: {exc}"
                continue
            self.unreachable.pop(zone.name, None)
            box = zone_region(zone, T, camera)
            if box is not None:
                crops.append(Crop(box, "zone", zone=zone.name))
        return crops

    def poll(self) -> list[dict[str, Any]]:
        """Findings of the frames scored since the last call, as ``mmp.findings/1``."""
        if self.worker is None:
            return []
        return self._take(self.worker.results())

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        return self.worker.wait_idle(timeout_s) if self.worker is not None else True

    def close(self) -> list[dict[str, Any]]:
        """Wait for the worker, stop it; its last findings."""
        if self.worker is None:
            return []
        self.worker.wait_idle()
        found = self._take(self.worker.results())
        self.worker.close()
        return found

    def _take(self, results: list) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for r in results:
            self.latest = [finding_json(f, r.backend) for f in r.findings]
            found += self.latest
        return found

    def diagnostics(self) -> list[out.StatusReport]:
        """One status: the model's health and counters, or why there are no findings;
        none when open-vocabulary findings are not configured at all."""
        name = "multimodal_perception: open-vocabulary findings"
        if self.worker is None:
            return [out.StatusReport(name, out.WARN, self.problem)] if self.problem else []
        h, st, cache = self.worker.health(), self.worker.stats, self.worker.cache
        level = {"ok": out.OK, "degraded": out.WARN}.get(h["state"], out.ERROR)
        message = f"{h['backend']}: {h['state']}, {len(self.latest)} findings in the newest"
        if h["state"] != "ok":
            message += f"; last error: {h['last_error']}"
        if self.problem:  # prompts the model cannot score
            level = max(level, out.WARN)
            message += f"; not scored: {self.problem}"
        if self.unreachable:
            level = max(level, out.WARN)
            message += "; zones not scored: " + "; ".join(
                f"{z}: {why}" for z, why in self.unreachable.items()
            )
        values = {
            "prompts": ", ".join(self.prompts),
            "offered": st.offered,
            "skipped_rate": st.skipped_rate,
            "superseded": st.superseded,
            "crops_scored": self.worker.backend.crops,
            "cache_hit_rate": f"{cache.hit_rate:.3f}",
            **{k: str(v) for k, v in h.items() if k not in ("backend", "captions_skipped")},
            "frames_skipped": st.captions_skipped,
        }
        return [out.StatusReport(name, level, message, values=values)]


def finding_json(f: Finding, backend: str) -> dict[str, Any]:
    c = f.crop
    source: dict[str, Any] = (
        {"kind": "zone", "zone": c.zone}
        if c.source == "zone"
        else {"kind": "proposal", "label": "unknown object", "segment": c.detector_class}
        if c.source == "proposal"
        else {
            "kind": "box",
            "class": c.detector_class,
            "score": round(float(c.detector_score or 0.0), 4),
            "kept": bool(c.kept),
        }
    )
    return {
        "schema": FINDINGS_SCHEMA,
        "prompt": f.prompt,
        "score": round(f.score, 4),
        "box_2d": [int(v) for v in c.box_2d],
        "source": source,
        "stamp_ns": int(f.stamp_ns),
        "camera_frame": f.camera_frame,
        "backend": backend,
        "method": f.method,
        "cached": f.cached,
    }


def findings_outputs(found: list[dict[str, Any]], factory: MessageFactory) -> list[Output]:
    """Findings as messages on the ``findings`` topic: one String (JSON) each."""
    return [
        Output("findings", out.string_msg(factory, json.dumps(f, sort_keys=True)), f["stamp_ns"])
        for f in found
    ]
