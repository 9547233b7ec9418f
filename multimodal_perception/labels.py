"""Ground truth for ``mmp eval --gt FILE``: a user's own labels for their recordings.

Two formats:

- **KITTI** ``label_2`` files: a directory of ``NNNNNN.txt`` (or one such file); the n-th
  file (sorted) labels the n-th camera frame of the replay (frames in stamp order). Columns
  as in the KITTI object devkit: type, truncated, occluded, alpha, 2D box (left, top, right,
  bottom), ...; ``DontCare`` boxes are ignore regions (detections there count neither way).
- **JSON** (``*.json``, schema ``mmp.labels/1``)::

      {"schema": "mmp.labels/1",
       "frames": [{"stamp_ns": 1767225600000000000,
                   "boxes": [{"class": "car", "box_2d": [x1, y1, x2, y2]},
                             {"class": "ignore", "box_2d": [x1, y1, x2, y2]}]}]}

  ``stamp_ns`` is the camera image's header stamp; class ``ignore`` marks an ignore region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IGNORE = "ignore"


@dataclass(frozen=True)
class FrameLabels:
    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2, image pixels
    classes: list[str]  # dataset class names, or IGNORE


class LabelError(ValueError):
    """A label file that cannot be read; names the file, line and value."""


def _kitti_file(path: Path) -> FrameLabels:
    boxes, classes = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < 8:
            raise LabelError(f"{path}:{n}: expected at least 8 KITTI columns, got {len(cols)}")
        try:
            box = [float(v) for v in cols[4:8]]
        except ValueError:
            raise LabelError(f"{path}:{n}: box {cols[4:8]} is not numeric") from None
        boxes.append(box)
        classes.append(IGNORE if cols[0] == "DontCare" else cols[0])
    return FrameLabels(np.array(boxes, float).reshape(-1, 4), classes)


def _json_file(path: Path) -> dict[int, FrameLabels]:
    try:
        doc = json.loads(path.read_text())
        schema = doc.get("schema")
        frames = doc["frames"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise LabelError(f"{path}: not an mmp.labels/1 file ({type(exc).__name__})") from None
    if schema != "mmp.labels/1":
        raise LabelError(f"{path}: schema {schema!r}, expected 'mmp.labels/1'")
    out = {}
    for n, frame in enumerate(frames):
        try:
            boxes = np.array([b["box_2d"] for b in frame["boxes"]], float).reshape(-1, 4)
            classes = [str(b["class"]) for b in frame["boxes"]]
            out[int(frame["stamp_ns"])] = FrameLabels(boxes, classes)
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelError(f"{path}: frames[{n}]: {type(exc).__name__}: {exc}") from None
    return out


def load_labels(path: str | Path, camera_stamps: list[int]) -> dict[int, FrameLabels]:
    """Labels per camera stamp. ``camera_stamps``: the replay's frames, in stamp order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labels {path} do not exist")
    if path.suffix == ".json":
        return _json_file(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise LabelError(f"{path}: no KITTI label files (*.txt)")
    if len(files) > len(camera_stamps):
        raise LabelError(
            f"{path}: {len(files)} label files for {len(camera_stamps)} frames in the replay"
        )
    return {stamp: _kitti_file(f) for stamp, f in zip(sorted(camera_stamps), files, strict=False)}
