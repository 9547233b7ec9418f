"""The multimodal (image-text) model: captions, visual Q&A and image-text labels.

One interface, several backends, all loading from local paths or local servers (nothing
is downloaded at run time):

- :class:`~.multimodal_backends.TransformersVLM` and
  :class:`~.multimodal_backends.OpenAIChatVLM` (a local model directory, a local
  OpenAI-compatible server with a deadline per attempt), in ``multimodal_backends.py``;
- :class:`ClipOnnx`: CLIP-style image and text encoders in ONNX (``similarity``); the
  open-vocabulary findings load it from a verified directory (``open_vocab.py``);
- :class:`GroundedFallback`: no model: answers counting, nearest, where and moving
  questions from the structured scene and says plainly when it cannot.

Prompts are grounded with the structured scene (objects with track ids, classes, ranges,
directions) so answers can cite track ids. :class:`ResultCache` reuses the text for a
near-identical frame (perceptual hash) showing the same (class, track id) set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..describe import describe_scene, direction


class MultimodalError(RuntimeError):
    """A backend that cannot answer: unreachable, timed out, malformed reply, bad model."""


class MultimodalTimeout(MultimodalError):
    """A backend that did not answer within its deadline."""


class MultimodalBackend(Protocol):
    name: str

    def describe(self, images: list[np.ndarray], scene: dict[str, Any]) -> str: ...

    def answer(self, question: str, images: list[np.ndarray], scene: dict[str, Any]) -> str: ...


def grounding(scene: dict[str, Any], limit: int = 12) -> str:
    """The structured scene as prompt text: objects with ids, classes, ranges, directions."""
    objects = [o for o in scene.get("objects", []) if o.get("confirmed")]
    objects.sort(key=lambda o: (o["range_m"] is None, o["range_m"] or 0.0))
    lines = []
    for o in objects[:limit]:
        where = (
            f"{o['range_m']:.1f} m {direction(o['bearing_deg'])}"
            if o["range_m"] is not None
            else "range unknown"
        )
        speed = f", moving {o['speed_mps']:.1f} m/s" if o.get("speed_mps") else ""
        lines.append(f"- #{o['track_id']} {o['class']}, {where}{speed}")
    listing = "\n".join(lines) if lines else "- none"
    return (
        "Objects detected by the vehicle's sensors (cite them by #id; mention no other "
        f"objects as certain):\n{listing}"
    )


CAPTION_PROMPT = "Describe the scene for a driver in one or two sentences."


# -- the grounded fallback ---------------------------------------------------------------
_PLURALS = {
    "people": "person",
    "persons": "person",
    "pedestrians": "person",
    "pedestrian": "person",
    "cars": "car",
    "vehicles": "vehicle",
    "trucks": "truck",
    "buses": "bus",
    "cyclists": "cyclist",
    "bikes": "bicycle",
    "bicycles": "bicycle",
    "forklifts": "truck",
    "forklift": "truck",
}
_VEHICLES = {"car", "truck", "bus", "train", "motorcycle"}


@dataclass
class GroundedFallback:
    """Answers from the structured scene only; no model."""

    name: str = "grounded_fallback"

    def describe(self, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        return describe_scene(scene)

    def answer(self, question: str, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        q = question.lower()
        objects = [o for o in scene.get("objects", []) if o.get("confirmed")]
        words = re.findall(r"[a-z]+", q)
        classes = {_PLURALS.get(w, w) for w in words}
        known = (
            {o["class"] for o in objects} | _VEHICLES | {"person", "cyclist", "bicycle", "vehicle"}
        )
        wanted = classes & known

        def matches(o: dict[str, Any]) -> bool:
            if not wanted:
                return True
            return o["class"] in wanted or ("vehicle" in wanted and o["class"] in _VEHICLES)

        ranged = [o for o in objects if o["range_m"] is not None and matches(o)]
        if "how many" in q or q.startswith("count") or "number of" in q:
            n = sum(1 for o in objects if matches(o))
            what = " or ".join(sorted(wanted)) if wanted else "object"
            return f"{n} {what}{'' if n == 1 else 's'} in view."
        if any(w in words for w in ("closest", "nearest")) or "close to" in q:
            if not ranged:
                return "Nothing with a known range is in view."
            o = min(ranged, key=lambda o: o["range_m"])
            return (
                f"The closest is {o['class']} #{o['track_id']}, {o['range_m']:.1f} m "
                f"{direction(o['bearing_deg'])}."
            )
        if any(w in words for w in ("approaching", "approach", "coming", "closing")):
            closing = [o for o in ranged if (o.get("range_rate_mps") or 0.0) < -1.0]
            if not closing:
                return "No: nothing in view is approaching."
            parts = [
                f"{o['class']} #{o['track_id']} at {-o['range_rate_mps']:.1f} m/s, "
                f"{o['range_m']:.1f} m {direction(o['bearing_deg'])}"
                for o in sorted(closing, key=lambda o: o["range_m"])
            ]
            return "Yes: " + "; ".join(parts) + "."
        if any(w in words for w in ("moving", "move", "stationary", "parked", "stopped")):
            moving = [o for o in ranged if (o.get("speed_mps") or 0.0) >= 1.0]
            if not moving:
                return "Nothing in view is moving."
            return (
                "Moving: "
                + "; ".join(
                    f"{o['class']} #{o['track_id']} {o['speed_mps']:.1f} m/s" for o in moving
                )
                + "."
            )
        if "where" in words:
            ids = [int(n) for n in re.findall(r"#\s*(\d+)", q)]
            hits = [o for o in ranged if o["track_id"] in ids] if ids else ranged
            if not hits:
                return "I cannot find that in the current scene."
            return (
                "; ".join(
                    f"{o['class']} #{o['track_id']} is {o['range_m']:.1f} m "
                    f"{direction(o['bearing_deg'])}"
                    for o in hits[:5]
                )
                + "."
            )
        return (
            "I cannot answer that from the structured scene (I can count objects, name "
            "the closest, and say where things are and whether they move or approach)."
        )


# -- CLIP-style encoders in ONNX ---------------------------------------------------------
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's RGB normalisation (OpenAI, open_clip)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipOnnx:
    """``image_encoder.onnx`` (N,3,S,S float, RGB, CLIP normalisation) and
    ``text_encoder.onnx`` (N,L int64 token ids; an ``attention_mask`` input, as Hugging
    Face exports have, is fed too) plus ``tokenizer.json`` in one directory, as open_clip
    and Hugging Face (optimum) exports are. ``image_output`` / ``text_output`` name the
    embedding outputs (None: the first output). ``open_vocab.load_clip`` builds one from
    the directory's verified ``manifest.json``."""

    model_dir: str | Path
    image_size: int = 224
    context_length: int = 77
    name: str = "clip_onnx"
    template: str = "a photo of a {}"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    logit_scale: float = 100.0  # CLIP's learned temperature, exp(4.6052)
    pad_id: int = 0  # open_clip's; the encoder pools at end-of-text, the highest id
    resize: str = "stretch"  # or "center_crop": CLIP's own (shorter side, then centre)
    image_output: str | None = None
    text_output: str | None = None

    def __post_init__(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(self.model_dir)
        for f in ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json"):
            if not (path / f).is_file():
                raise MultimodalError(f"CLIP directory {path}: missing {f}")
        if self.resize not in ("stretch", "center_crop"):
            raise MultimodalError(f"CLIP resize={self.resize!r}: stretch or center_crop")
        opts = ["CPUExecutionProvider"]
        self.image = ort.InferenceSession(str(path / "image_encoder.onnx"), providers=opts)
        self.text = ort.InferenceSession(str(path / "text_encoder.onnx"), providers=opts)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        for session, output in ((self.image, self.image_output), (self.text, self.text_output)):
            names = [o.name for o in session.get_outputs()]
            if output is not None and output not in names:
                raise MultimodalError(f"CLIP directory {path}: no output {output!r} in {names}")

    def _pixels(self, crop: np.ndarray) -> np.ndarray:
        s = self.image_size
        if self.resize == "center_crop":
            h, w = crop.shape[:2]
            f = s / min(h, w)
            crop = cv2.resize(
                crop, (max(s, round(w * f)), max(s, round(h * f))), interpolation=cv2.INTER_CUBIC
            )
            y, x = (crop.shape[0] - s) // 2, (crop.shape[1] - s) // 2
            crop = crop[y : y + s, x : x + s]
        else:
            crop = cv2.resize(crop, (s, s), interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        mean, std = np.array(self.mean, np.float32), np.array(self.std, np.float32)
        return ((rgb - mean) / std).transpose(2, 0, 1)

    def embed_images(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, D) unit embeddings of BGR crops."""
        batch = np.stack([self._pixels(c) for c in crops])
        outputs = [self.image_output] if self.image_output else None
        out = self.image.run(outputs, {self.image.get_inputs()[0].name: batch})[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_texts(self, labels: list[str]) -> np.ndarray:
        """(N, D) unit embeddings of ``template`` filled with each label."""
        ids = np.full((len(labels), self.context_length), self.pad_id, np.int64)
        mask = np.zeros_like(ids)
        for i, label in enumerate(labels):
            tokens = self.tokenizer.encode(self.template.format(label)).ids
            if len(tokens) > self.context_length:
                # As CLIP's tokenizer truncates: the end-of-text token stays last, since
                # the text encoder pools at it.
                tokens = tokens[: self.context_length - 1] + tokens[-1:]
            ids[i, : len(tokens)] = tokens
            mask[i, : len(tokens)] = 1
        feeds = {
            i.name: mask if i.name == "attention_mask" else ids for i in self.text.get_inputs()
        }
        out = self.text.run([self.text_output] if self.text_output else None, feeds)[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def logits(self, crops: list[np.ndarray], text_embeddings: np.ndarray) -> np.ndarray:
        """(crops, texts) scaled cosine similarities, CLIP's logits."""
        return self.logit_scale * self.embed_images(crops) @ text_embeddings.T

    def similarity(self, crops: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """(crops, labels) softmax scores over the labels for each crop."""
        if not crops or not labels:
            return np.zeros((len(crops), len(labels)), np.float32)
        return softmax(self.logits(crops, self.embed_texts(labels)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- result cache ------------------------------------------------------------------------
def dhash(image: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash: robust to noise and compression, changes with content."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


@dataclass
class ResultCache:
    """Reuses the last texts for a near-identical frame with the same objects in view."""

    max_hamming: int = 6
    capacity: int = 32
    hits: int = 0
    misses: int = 0
    saved_s: float = 0.0
    _entries: list[tuple[int, frozenset, str, str, float]] = field(default_factory=list)

    @staticmethod
    def objects_key(scene: dict[str, Any]) -> frozenset:
        return frozenset(
            (o["class"], o["track_id"]) for o in scene.get("objects", []) if o.get("confirmed")
        )

    def get(self, kind: str, image: np.ndarray, scene: dict[str, Any]) -> str | None:
        h, key = dhash(image), self.objects_key(scene)
        for eh, ekey, ekind, text, cost in reversed(self._entries):
            if ekind == kind and ekey == key and bin(eh ^ h).count("1") <= self.max_hamming:
                self.hits += 1
                self.saved_s += cost
                return text
        self.misses += 1
        return None

    def put(
        self, kind: str, image: np.ndarray, scene: dict[str, Any], text: str, cost_s: float
    ) -> None:
        self._entries.append((dhash(image), self.objects_key(scene), kind, text, cost_s))
        del self._entries[: -self.capacity]

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
