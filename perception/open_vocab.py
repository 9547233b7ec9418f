"""Open-vocabulary scoring: configured text prompts against image crops with a CLIP model.

Owns the CLIP model directory (``open_vocab.model_dir``) and what is done with it:

- :func:`load_clip_manifest` / :func:`load_clip`: the directory holds
  ``image_encoder.onnx``, ``text_encoder.onnx``, ``tokenizer.json`` and ``manifest.json``
  (schema ``mmp.clip_manifest/1``, below); every file's sha256 is checked against the
  manifest before anything is loaded, a mismatch naming the file and both digests;
- :class:`OpenVocabScorer`: the prompts are embedded once; ``score(crops)`` gives each
  crop's CLIP softmax probability of each prompt, against the prompts and a few
  background prompts;
- :class:`OpenVocabWorker`: the multimodal worker (``multimodal_worker.py``) running
  this job kind instead of captions: off the sensor path, rate-limited in header time,
  newest frame wins, backoff and health, and the dhash result cache per crop.

``manifest.json``::

    {"schema": "mmp.clip_manifest/1", "name": "...", "licence": "...", "source": "...",
     "files": {"image_encoder.onnx": "<sha256>", "text_encoder.onnx": "<sha256>",
               "tokenizer.json": "<sha256>"},
     "image_size": 224, "context_length": 77, "prompt_template": "a photo of {}.",
     optional: "mean", "std" (RGB, CLIP's by default), "logit_scale" (100),
     "pad_id" (0), "resize" ("center_crop", CLIP's; or "stretch"),
     "image_output" / "text_output" (embedding output names; default the first output),
     "background_prompts" (default BACKGROUND_PROMPTS)}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import ManifestError, _require
from .multimodal import CLIP_MEAN, CLIP_STD, ClipOnnx, softmax
from .multimodal_worker import MultimodalWorker
from .runtime import verify_model_file

CLIP_MANIFEST_SCHEMA = "mmp.clip_manifest/1"
CLIP_FILES = ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json")
# What a crop shows when it shows none of the prompts: generic scenery an inspection
# robot sees. A manifest may name others (what suits a model is the model's business).
BACKGROUND_PROMPTS = ("background", "nothing in particular", "the floor", "a wall")


@dataclass(frozen=True)
class ClipManifest:
    name: str
    files: dict[str, str]  # file name -> sha256
    image_size: int
    context_length: int
    prompt_template: str
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    logit_scale: float = 100.0
    pad_id: int = 0
    resize: str = "center_crop"
    image_output: str | None = None
    text_output: str | None = None
    background_prompts: tuple[str, ...] = BACKGROUND_PROMPTS
    licence: str = ""
    source: str = ""


def _triple(doc: dict[str, Any], key: str, default: tuple, where: str) -> tuple:
    value = doc.get(key, default)
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ManifestError(f"{where}: {key} must be 3 numbers (RGB), got {value!r}")
    return tuple(float(v) for v in value)


def parse_clip_manifest(doc: Any, where: str) -> ClipManifest:
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    schema = doc.get("schema")
    if schema != CLIP_MANIFEST_SCHEMA:
        raise ManifestError(f"{where}: schema={schema!r}, expected {CLIP_MANIFEST_SCHEMA!r}")
    files = _require(doc, "files", dict, where)
    for f in CLIP_FILES:
        sha = files.get(f)
        if (
            not isinstance(sha, str)
            or len(sha) != 64
            or not set(sha.lower()) <= set("0123456789abcdef")
        ):
            raise ManifestError(f"{where}: files[{f!r}] must be its sha256 (64 hex digits)")
    image_size = _require(doc, "image_size", int, where)
    context_length = _require(doc, "context_length", int, where)
    template = _require(doc, "prompt_template", str, where)
    if not 32 <= image_size <= 1024 or not 1 <= context_length <= 1024:
        raise ManifestError(f"{where}: image_size {image_size} / context_length out of range")
    if template.count("{}") != 1:
        raise ManifestError(f"{where}: prompt_template {template!r} needs one '{{}}'")
    std = _triple(doc, "std", CLIP_STD, where)
    if min(std) <= 0:
        raise ManifestError(f"{where}: std must be > 0")
    resize = doc.get("resize", "center_crop")
    if resize not in ("center_crop", "stretch"):
        raise ManifestError(f"{where}: resize={resize!r}, expected center_crop or stretch")
    background = doc.get("background_prompts", list(BACKGROUND_PROMPTS))
    if not isinstance(background, list) or not all(isinstance(b, str) for b in background):
        raise ManifestError(f"{where}: background_prompts must be a list of text")
    scale = float(doc.get("logit_scale", 100.0))
    if not 0 < scale <= 1000:
        raise ManifestError(f"{where}: logit_scale={scale} out of (0, 1000]")
    return ClipManifest(
        name=_require(doc, "name", str, where),
        files={f: files[f].lower() for f in CLIP_FILES},
        image_size=image_size,
        context_length=context_length,
        prompt_template=template,
        mean=_triple(doc, "mean", CLIP_MEAN, where),
        std=std,
        logit_scale=scale,
        pad_id=int(doc.get("pad_id", 0)),
        resize=resize,
        image_output=doc.get("image_output"),
        text_output=doc.get("text_output"),
        background_prompts=tuple(background),
        licence=str(doc.get("licence", "")),
        source=str(doc.get("source", "")),
    )


def load_clip_manifest(model_dir: str | Path) -> ClipManifest:
    """The directory's ``manifest.json``, validated, with every file's sha256 checked
    (``runtime.ModelLoadError`` naming the file and both digests on a mismatch)."""
    path = Path(model_dir) / "manifest.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read the CLIP manifest: {exc}") from None
    manifest = parse_clip_manifest(doc, str(path))
    for name, sha in manifest.files.items():
        verify_model_file(Path(model_dir) / name, sha)
    return manifest


def load_clip(model_dir: str | Path) -> tuple[ClipOnnx, ClipManifest]:
    """The CLIP encoders of a verified directory, configured by its manifest."""
    m = load_clip_manifest(model_dir)
    clip = ClipOnnx(
        model_dir,
        image_size=m.image_size,
        context_length=m.context_length,
        name=f"clip_onnx:{m.name}",
        template=m.prompt_template,
        mean=m.mean,
        std=m.std,
        logit_scale=m.logit_scale,
        pad_id=m.pad_id,
        resize=m.resize,
        image_output=m.image_output,
        text_output=m.text_output,
    )
    return clip, m


class OpenVocabScorer:
    """Scores crops against text prompts; counts its model calls (``calls``, ``crops``)."""

    def __init__(
        self, clip: ClipOnnx, prompts: list[str], background: tuple[str, ...] = BACKGROUND_PROMPTS
    ) -> None:
        if not prompts:
            raise ValueError("open-vocabulary scoring needs at least one prompt")
        self.clip = clip
        self.name = clip.name
        self.prompts = tuple(prompts)
        self.background = tuple(b for b in background if b not in self.prompts)
        # CLIP's softmax normalises over the candidates it is given: with the prompts
        # alone, each crop's scores sum to 1, so a crop of plain floor would score
        # 1 / len(prompts) for every prompt (1.0 with a single prompt) whatever it shows.
        # The background prompts take that mass when no prompt fits; a prompt's score is
        # then "this rather than the other prompts and rather than nothing in particular".
        # Embedded once: the prompts do not change while the node runs.
        self.text_embeddings = clip.embed_texts([*self.prompts, *self.background])
        self.calls = 0
        self.crops = 0

    def score(self, crops: list[np.ndarray]) -> np.ndarray:
        """(crops, prompts) probabilities; the background prompts' share is left out."""
        if not crops:
            return np.zeros((0, len(self.prompts)), np.float32)
        self.calls += 1
        self.crops += len(crops)
        probs = softmax(self.clip.logits(crops, self.text_embeddings))
        return probs[:, : len(self.prompts)]


@dataclass(frozen=True)
class Crop:
    """An image region to score, and where it came from."""

    box_2d: tuple[int, int, int, int]  # x1 y1 x2 y2, px, inside the image
    source: str  # "box": a detector box; "zone": an inspection zone's image region;
    # "proposal": a segmentation region no detector box covers (detector_class "segment:<c>")
    detector_class: str | None = None
    detector_score: float | None = None
    kept: bool | None = None  # the box survived the consistency filter
    zone: str | None = None


@dataclass(frozen=True)
class Finding:
    prompt: str
    score: float
    crop: Crop
    stamp_ns: int  # of the frame scored
    camera_frame: str
    cached: bool = False  # scores reused for a near-identical crop, no model call
    method: str = "clip"  # how the score was made: clip, or the zero-shot hierarchy/similarity

    @property
    def box_2d(self) -> tuple[int, int, int, int]:
        return self.crop.box_2d

    @property
    def source(self) -> str:
        return self.crop.source


@dataclass(frozen=True)
class OpenVocabJob:
    crops: tuple[Crop, ...]
    camera_frame: str
    min_score: float


@dataclass(frozen=True)
class OpenVocabResult:
    """One scored frame: its findings (possibly none)."""

    stamp_ns: int
    camera_frame: str
    findings: tuple[Finding, ...]
    crops: int
    cached: int  # crops answered by the cache
    latency_ms: float
    backend: str


def cache_kind(crop: np.ndarray) -> str:
    """The cache partition of a crop. dhash sees only brightness gradients: a plain red
    patch and a plain grey one hash alike, so the coarse mean colour (32 levels a
    channel) and the shape (aspect ratio, in octaves) partition the cache too."""
    b, g, r = (int(v) // 32 for v in crop.reshape(-1, crop.shape[-1]).mean(axis=0)[:3])
    aspect = round(float(np.log2(crop.shape[1] / crop.shape[0])))
    return f"open_vocab:{b},{g},{r}:{aspect}"


_NO_SCENE: dict[str, Any] = {}  # crops are cached by their pixels alone


class OpenVocabWorker(MultimodalWorker):
    """The multimodal worker scoring crops (``offer``) instead of captioning frames."""

    backend: OpenVocabScorer

    def offer(
        self,
        stamp_ns: int,
        image: np.ndarray,
        crops: list[Crop],
        camera_frame: str,
        min_score: float,
    ) -> bool:
        """Offer a frame's crops (never waits); False when the rate limit skips it."""
        job = OpenVocabJob(tuple(crops), camera_frame, min_score)
        return self.offer_frame(stamp_ns, image, {"open_vocab": job})

    def results(self) -> list[OpenVocabResult]:  # type: ignore[override]
        return super().results()  # type: ignore[return-value]

    def frame_work(
        self, stamp: int, image: np.ndarray, scene: dict[str, Any]
    ) -> OpenVocabResult | None:
        job: OpenVocabJob = scene["open_vocab"]
        t0 = time.perf_counter()
        # The zero-shot scorer wants its own cut (a square with context around the box).
        cut = getattr(self.backend, "cut", None)
        boxes = [c.box_2d for c in job.crops]
        pixels = (
            [cut(image, b) for b in boxes]
            if cut is not None
            else [image[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes]
        )
        kinds = [cache_kind(p) for p in pixels]
        scores: list[np.ndarray | None] = []
        for p, kind in zip(pixels, kinds, strict=True):
            hit = self.cache.get(kind, p, _NO_SCENE)
            scores.append(None if hit is None else np.asarray(json.loads(hit), float))
        misses = [i for i, s in enumerate(scores) if s is None]
        if misses:
            n_prompts = len(self.backend.prompts)

            def call() -> np.ndarray:
                out = np.asarray(self.backend.score([pixels[i] for i in misses]))
                if out.shape != (len(misses), n_prompts) or not np.isfinite(out).all():
                    raise ValueError(f"scores of shape {out.shape}, not finite or not as asked")
                return out

            value, cost, reason = self.call_backend(call)
            if reason is not None:
                return self._failed(None, stamp, image, scene, reason)  # counted as skipped
            for i, row in zip(misses, value, strict=True):
                scores[i] = row
                text = json.dumps([float(v) for v in row])
                self.cache.put(kinds[i], pixels[i], _NO_SCENE, text, cost / len(misses))
        method = getattr(self.backend, "method", lambda _prompt: "clip")
        findings = [
            Finding(
                prompt, float(s), crop, stamp, job.camera_frame, i not in misses, method(prompt)
            )
            for i, (crop, row) in enumerate(zip(job.crops, scores, strict=True))
            for prompt, s in zip(self.backend.prompts, row, strict=True)
            if s >= job.min_score
        ]
        findings.sort(key=lambda f: -f.score)
        latency_ms = (time.perf_counter() - t0) * 1e3
        return OpenVocabResult(
            stamp,
            job.camera_frame,
            tuple(findings),
            len(job.crops),
            len(job.crops) - len(misses),
            latency_ms,
            self.backend.name,
        )
