"""Text reading (OCR): PP-OCRv4 detection + recognition through ``rapidocr-onnxruntime``.

Owns turning an image region into text lines with their boxes and confidences:

- the models are the ONNX files inside the ``rapidocr-onnxruntime`` 1.4.4 wheel
  (PP-OCRv4 text detection and recognition, the mobile direction classifier, Apache-2.0);
  each is checked against the sha256 pinned here before the library loads it, as every
  model the project runs is; nothing is downloaded (the 3.x ``rapidocr`` would);
- :meth:`TextReader.read` reads a whole image or the boxes given (each cut with a small
  margin, coordinates mapped back to the image), and answers for any crop (empty, 1 px,
  all one colour, partly or wholly outside the image) with a list, possibly empty;
- CUDA: the library's ``use_cuda`` per stage when onnxruntime has the CUDA provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .runtime import ModelLoadError, verify_model_file

PACKAGE = "rapidocr_onnxruntime"
VERSION = "1.4.4"
MODEL_SHA256 = {  # the files of the 1.4.4 wheel, as installed
    "ch_PP-OCRv4_det_infer.onnx":
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    "ch_PP-OCRv4_rec_infer.onnx":
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx":
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
}  # fmt: skip
MARGIN = 0.15  # of the box's height, around each box read: the detector needs some border
MIN_SIDE = 8  # px: below this no text can be read; answered with no lines, not an error


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    box_2d: tuple[float, float, float, float]  # x0 y0 x1 y1 in the image's pixels

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": round(self.confidence, 3),
                "box_2d": [round(v, 1) for v in self.box_2d]}  # fmt: skip


class TextReader:
    """PP-OCRv4 over BGR images; ``calls`` counts the regions read."""

    def __init__(self, use_cuda: bool = False, min_confidence: float = 0.5) -> None:
        try:
            import rapidocr_onnxruntime as rapid
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ModelLoadError(
                f"text reading needs {PACKAGE}=={VERSION} (make venv installs it): {exc}"
            ) from None
        models = Path(rapid.__file__).parent / "models"
        for name, sha in MODEL_SHA256.items():
            verify_model_file(models / name, sha)
        self.name = f"pp-ocrv4:{PACKAGE}-{getattr(rapid, '__version__', VERSION)}"
        self.min_confidence = min_confidence
        self._ocr = RapidOCR(
            det_use_cuda=use_cuda, cls_use_cuda=use_cuda, rec_use_cuda=use_cuda,
            text_score=min_confidence, print_verbose=False,
        )  # fmt: skip
        self.calls = 0

    def read(
        self, image: np.ndarray, boxes: list[tuple[float, float, float, float]] | None = None
    ) -> list[list[TextLine]]:
        """Text lines per box (one list for the whole image when ``boxes`` is None)."""
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        h, w = image.shape[:2]
        regions = [(0.0, 0.0, float(w), float(h))] if boxes is None else boxes
        return [self._read_region(image, box) for box in regions]

    def _read_region(self, image: np.ndarray, box: tuple[float, float, float, float]) -> list:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = box
        m = MARGIN * max(y1 - y0, 0.0)
        ix0, iy0 = max(0, int(x0 - m)), max(0, int(y0 - m))
        ix1, iy1 = min(w, int(np.ceil(x1 + m))), min(h, int(np.ceil(y1 + m)))
        if ix1 - ix0 < MIN_SIDE or iy1 - iy0 < MIN_SIDE:
            return []
        crop = np.ascontiguousarray(image[iy0:iy1, ix0:ix1, :3])
        self.calls += 1
        found, _ = self._ocr(crop)
        lines = []
        for polygon, text, confidence in found or ():
            pts = np.asarray(polygon, float)
            x, y = pts[:, 0] + ix0, pts[:, 1] + iy0
            if float(confidence) >= self.min_confidence and text.strip():
                bbox = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
                lines.append(TextLine(text.strip(), float(confidence), bbox))
        lines.sort(key=lambda t: (round(t.box_2d[1] / 10), t.box_2d[0]))  # reading order
        return lines


def character_accuracy(read: str, truth: str) -> float:
    """1 - edit distance / length of the truth (case and spacing as written)."""
    a, b = read, truth
    if not b:
        return 1.0 if not a else 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return max(0.0, 1.0 - prev[-1] / len(b))
