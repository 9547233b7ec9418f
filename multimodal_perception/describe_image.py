"""``mmp describe-image``: the image-text models on one image, for users and for checks.

Owns the command's contract: an image (any format OpenCV reads), optional boxes (a JSON
list of ``[x0, y0, x1, y1]`` pixels), queries (texts; default the open-vocabulary
prompts), optional text reading. Without boxes the regions are the whole image and the
boxes the detector finds there. The answer, per region and per query: the score, how it
was made (``hierarchy`` / ``similarity``, ``perception/zero_shot.py``) or the reason the
model cannot score the text; with ``--read-text`` the text lines with boxes and
confidences. Every input is checked before anything runs or is written: a problem is
one line and exit 2 (``cli.main``), and ``--out`` is written whole or not at all.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .perception.zero_shot import UNKNOWN, ZeroShotScorer

DEFAULT_QUERIES = ("vehicle", "car", "truck", "bus", "bicycle", "motorcycle", "person",
                   "traffic sign", "trash can", "forklift", "ladder")  # fmt: skip
MIN_SCORE = 0.3  # a query named in the caption scores at least this


def read_image(path: str | Path) -> np.ndarray:
    import cv2

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image {p}: no such file")
    image = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"image {p}: not an image OpenCV can read")
    return image


def read_boxes(path: str | Path, width: int, height: int) -> list[tuple[float, ...]]:
    """The boxes of a JSON file, each inside a ``width`` x ``height`` image."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"boxes {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"boxes {path}: not JSON: {exc}") from None
    if not isinstance(doc, list) or not doc:
        raise ValueError(f"boxes {path}: expected a non-empty JSON list of [x0, y0, x1, y1]")
    boxes = []
    for i, box in enumerate(doc):
        ok = isinstance(box, list) and len(box) == 4
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        if not ok or not all(math.isfinite(v) for v in box):
            raise ValueError(f"boxes {path}: box {i} = {box!r} is not [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"boxes {path}: box {i} = {box!r} has no area (x0 < x1, y0 < y1)")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(
                f"boxes {path}: box {i} = {box!r} is outside the {width}x{height} image"
            )
        boxes.append((x0, y0, x1, y1))
    return boxes


def detector_regions(image: np.ndarray, model_dir: Path | None) -> list[dict[str, Any]]:
    """The detector's boxes on the image (the configured default detector)."""
    from .config import load_parameters
    from .perception.stack import load_models

    params = load_parameters().with_overrides(
        {"models.directory": str(model_dir or ""), "models.segmenter": "none"}
    )
    stack = load_models(params)
    try:
        det = stack.detector(image)
    finally:
        stack.close()
    return [
        {"source": "detector", "box_2d": [round(float(v), 1) for v in box],
         "detector_class": cls, "detector_score": round(float(score), 3)}
        for box, cls, score in zip(det.boxes, det.labels(), det.scores, strict=True)
    ]  # fmt: skip


def score_regions(scorer: ZeroShotScorer, image: np.ndarray, regions: list[dict[str, Any]]) -> None:
    crops = [scorer.cut(image, tuple(r["box_2d"])) for r in regions]
    scores = scorer.score(crops)
    for r, row in zip(regions, scores, strict=True):
        by_query: dict[str, Any] = {}
        for text, sense in scorer.senses.items():
            if sense.method == UNKNOWN:
                by_query[text] = {"score": None, "unknown": sense.reason}
            else:
                j = scorer.prompts.index(text)
                by_query[text] = {"score": round(float(row[j]), 4), "method": sense.method}
        r["scores"] = by_query


def caption(regions: list[dict[str, Any]]) -> dict[str, Any]:
    """Each region's best-scoring query, named only where it scores >= MIN_SCORE: every
    noun in the text is a region id and a score."""
    said, evidence = [], []
    for r in regions:
        scored = [(q, s["score"]) for q, s in r["scores"].items() if s["score"] is not None]
        if not scored:
            continue
        query, score = max(scored, key=lambda qs: qs[1])
        if score >= MIN_SCORE:
            said.append(f"{query} ({score:.2f}, {r['id']})")
            evidence.append({"noun": query, "region": r["id"], "score": score})
    text = "I see " + ", ".join(said) + "." if said else "Nothing I was asked about scores high."
    return {"text": text, "evidence": evidence}


def describe(
    image_path: str,
    boxes_path: str | None,
    queries: list[str] | None,
    read_text: bool,
    model_dir: Path,
) -> dict[str, Any]:
    from .perception.zero_shot import load_zero_shot

    image = read_image(image_path)
    h, w = image.shape[:2]
    boxes = read_boxes(boxes_path, w, h) if boxes_path is not None else None
    texts = [q.strip() for q in (queries or DEFAULT_QUERIES) if q.strip()]
    if not texts:
        raise ValueError("--query: every query is empty")
    scorer = load_zero_shot(texts, model_dir)
    if boxes is not None:
        regions = [{"source": "boxes", "box_2d": list(b)} for b in boxes]
    else:
        whole = {"source": "image", "box_2d": [0.0, 0.0, float(w), float(h)]}
        regions = [whole, *detector_regions(image, model_dir)]
    for i, r in enumerate(regions):
        r["id"] = f"r{i}"
    score_regions(scorer, image, regions)
    out: dict[str, Any] = {
        "image": str(image_path),
        "size": [w, h],
        "backend": scorer.name,
        "queries": {t: s.describe() for t, s in scorer.senses.items()},
        "regions": regions,
        "caption": caption(regions),
    }
    if read_text:
        from .perception.text_reading import TextReader

        reader = TextReader()
        lines = reader.read(image, None if boxes is None else boxes)
        if boxes is None:
            out["text"] = [t.to_json() for t in lines[0]]
        else:
            for r, found in zip(regions, lines, strict=True):
                r["text"] = [t.to_json() for t in found]
        out["text_backend"] = reader.name
    return out


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def format_text(doc: dict[str, Any]) -> str:
    lines = [f"{doc['image']} {doc['size'][0]}x{doc['size'][1]}, {doc['backend']}"]
    for q, s in doc["queries"].items():
        how = s.get("sense", "") + (f" [{s['wordnet']}]" if "wordnet" in s else "")
        lines.append(f"  query {q!r}: {s['method']} {how} {s.get('reason', '')}".rstrip())
    for r in doc["regions"]:
        head = f"{r['id']} {r['source']} {r['box_2d']}"
        if "detector_class" in r:
            head += f" detector {r['detector_class']} {r['detector_score']}"
        best = sorted(
            ((q, s["score"]) for q, s in r["scores"].items() if s["score"] is not None),
            key=lambda qs: -qs[1],
        )[:3]
        lines.append(f"{head}: " + ", ".join(f"{q} {v:.2f}" for q, v in best))
        lines += [f"    text {t['text']!r} ({t['confidence']})" for t in r.get("text", [])]
    lines += [
        f"  text {t['text']!r} ({t['confidence']}) at {t['box_2d']}" for t in doc.get("text", [])
    ]
    lines.append(doc["caption"]["text"])
    return "\n".join(lines)
