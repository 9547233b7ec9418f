"""The multimodal (image-text) model: captions, visual Q&A and image-text labels.

One interface, several backends, all loading from local paths or local servers (nothing
is downloaded at run time):

- :class:`~.multimodal_backends.TransformersVLM` and
  :class:`~.multimodal_backends.OpenAIChatVLM` (a local model directory, a local
  OpenAI-compatible server with a deadline per attempt), in ``multimodal_backends.py``;
- :class:`ClipOnnx`: CLIP-style image and text encoders in ONNX, for open-vocabulary
  re-labelling of boxes (``similarity``);
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
@dataclass
class ClipOnnx:
    """``image_encoder.onnx`` (N,3,H,W float, RGB, CLIP normalisation) and
    ``text_encoder.onnx`` (N,L int64 token ids) plus ``tokenizer.json`` in one directory."""

    model_dir: str | Path
    image_size: int = 224
    context_length: int = 77
    name: str = "clip_onnx"

    def __post_init__(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(self.model_dir)
        for f in ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json"):
            if not (path / f).is_file():
                raise MultimodalError(f"vlm.clip_dir {path}: missing {f}")
        opts = ["CPUExecutionProvider"]
        self.image = ort.InferenceSession(str(path / "image_encoder.onnx"), providers=opts)
        self.text = ort.InferenceSession(str(path / "text_encoder.onnx"), providers=opts)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))

    def _embed_images(self, crops: list[np.ndarray]) -> np.ndarray:
        mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
        std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
        batch = []
        for crop in crops:
            rgb = (
                cv2.cvtColor(
                    cv2.resize(crop, (self.image_size, self.image_size)), cv2.COLOR_BGR2RGB
                ).astype(np.float32)
                / 255.0
            )
            batch.append(((rgb - mean) / std).transpose(2, 0, 1))
        out = self.image.run(None, {self.image.get_inputs()[0].name: np.stack(batch)})[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def _embed_texts(self, labels: list[str]) -> np.ndarray:
        ids = np.zeros((len(labels), self.context_length), np.int64)
        for i, label in enumerate(labels):
            tokens = self.tokenizer.encode(f"a photo of a {label}").ids[: self.context_length]
            ids[i, : len(tokens)] = tokens
        out = self.text.run(None, {self.text.get_inputs()[0].name: ids})[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def similarity(self, crops: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """(crops, labels) softmax scores over the labels for each crop."""
        if not crops or not labels:
            return np.zeros((len(crops), len(labels)), np.float32)
        logits = 100.0 * self._embed_images(crops) @ self._embed_texts(labels).T
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
