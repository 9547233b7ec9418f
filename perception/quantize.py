"""The INT8 recipe: static quantisation of a float ONNX model for a derived manifest, and
the FP32-vs-INT8 box agreement used to judge it.

``quantize_model`` reads the source model the derived manifest pins (digest checked),
runs ``quant_pre_process`` (shape inference and graph optimisation) and lifts the opset
to the manifest's (per-channel QDQ needs opset 13), then ``quantize_static`` with the
manifest's ``quantization`` settings, calibrated on frames preprocessed by the project's
own encoder (``preprocess.resize_image`` + ``to_tensor``: letterbox, colour order, layout
exactly as the detector feeds the model). Nodes whose names start with a ``keep_float``
prefix stay FP32. The file and its provenance sidecar (produced sha256, source digest,
settings, calibration frames, tool versions) are written to a temporary name and moved
into place together. A source that is already quantised is refused, naming its ops.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .manifest import ModelManifest
from .preprocess import resize_image, to_tensor
from .runtime import PROVENANCE_SCHEMA, provenance_path, sha256_of, verify_model_file

QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
             "ConvInteger", "MatIntegerMul", "MatMulInteger", "DynamicQuantizeLinear")  # fmt: skip


class QuantizeError(RuntimeError):
    """The recipe cannot run; the message says why in one line."""


def quantized_ops(path: Path) -> dict[str, int]:
    """Quantisation ops in a model and its integer weight tensors (0 everywhere: float)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = {op: 0 for op in QUANT_OPS}
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    integer = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
    counts["integer_weights"] = sum(t.data_type in integer for t in model.graph.initializer)
    return {k: v for k, v in counts.items() if v}


def calibration_frames(directory: Path, count: int) -> list[Path]:
    """``count`` frames spread evenly over ``directory``'s images (sorted by name), so that
    the frames in between stay out of calibration as a held-out set."""
    images = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not images:
        raise QuantizeError(f"no calibration images (*.png, *.jpg) in {directory}")
    if count <= 0 or count >= len(images):
        return images
    step = len(images) / count
    return [images[int(i * step)] for i in range(count)]


class FrameReader:
    """Calibration batches for ``quantize_static`` (a ``CalibrationDataReader``): each
    image through the project's encoder, one frame per batch."""

    def __init__(self, frames: Sequence[Path], manifest: ModelManifest, input_name: str):
        self.frames, self.manifest, self.input_name = list(frames), manifest, input_name
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.frames):
            return None
        path = self.frames[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise QuantizeError(f"calibration image {path} cannot be read")
        spec = self.manifest.input
        return {self.input_name: to_tensor([resize_image(image, spec)[0]], spec)}

    def rewind(self) -> None:
        self._next = 0


def _prepare(source: Path, opset: int, work: Path) -> Path:
    from onnx import load, save, version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / "preprocessed.onnx"
    quant_pre_process(str(source), str(pre))
    model = load(str(pre))
    current = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current < opset:
        save(version_converter.convert_version(model, opset), str(pre))
    return pre


def _kept_float(model_path: Path, prefixes: Sequence[str]) -> list[str]:
    import onnx

    names = [n.name for n in onnx.load(str(model_path)).graph.node]
    out = []
    for prefix in prefixes:
        hits = [n for n in names if n.startswith(prefix)]
        if not hits:
            # A renamed export would silently quantise what the manifest keeps float.
            raise QuantizeError(f"keep_float prefix {prefix!r} matches no node of the model")
        out += hits
    return out


def quantize_model(
    derived: ModelManifest,
    source: ModelManifest,
    source_path: Path,
    out_dir: Path,
    frames: Sequence[Path],
) -> Path:
    """Write ``out_dir / derived.file`` and its provenance sidecar; return the file."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    settings = derived.quantization
    verify_model_file(source_path, source.sha256)
    already = quantized_ops(source_path)
    if already:
        ops = ", ".join(f"{v} {k}" for k, v in already.items())
        raise QuantizeError(f"{source.name} is already quantised ({ops}); nothing to do")
    if not frames:
        raise QuantizeError("no calibration frames")
    target = out_dir / derived.file
    if target.resolve() == source_path.resolve():
        raise QuantizeError(f"{target} is the source model itself; choose another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=target.parent) as tmp:
        work = Path(tmp)
        pre = _prepare(source_path, int(settings["opset"]), work)
        import onnx

        input_name = derived.input.name or onnx.load(str(pre)).graph.input[0].name
        made = work / target.name
        quantize_static(
            str(pre),
            str(made),
            FrameReader(frames, derived, input_name),
            quant_format=getattr(QuantFormat, settings["format"]),
            activation_type=getattr(QuantType, settings["activation_type"]),
            weight_type=getattr(QuantType, settings["weight_type"]),
            per_channel=settings["per_channel"],
            calibrate_method=getattr(CalibrationMethod, settings["calibrate_method"]),
            nodes_to_exclude=_kept_float(pre, settings["keep_float"]),
        )
        sidecar = work / provenance_path(target).name
        sidecar.write_text(json.dumps(_provenance(derived, source, made, frames), indent=2))
        # The sidecar last: a model without a matching sidecar is refused at load.
        os.replace(made, target)
        os.replace(sidecar, provenance_path(target))
    return target


def _provenance(
    derived: ModelManifest, source: ModelManifest, made: Path, frames: Sequence[Path]
) -> dict[str, Any]:
    import onnx
    import onnxruntime

    return {
        "schema": PROVENANCE_SCHEMA,
        "model": derived.name,
        "file": derived.file,
        "sha256": sha256_of(made),
        "source": {"model": source.name, "sha256": source.sha256},
        "recipe": derived.quantization,
        "calibration": {
            "directory": str(frames[0].parent.resolve()),
            "frames": [f.name for f in frames],
        },
        "tools": {
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "python": platform.python_version(),
        },
        "made_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_provenance(model_path: Path) -> dict[str, Any]:
    return json.loads(provenance_path(model_path).read_text())


@dataclass
class Agreement:
    """Boxes of a reference detector (FP32) matched by another (INT8): same class,
    IoU >= ``iou``, greedy in the reference's score order."""

    reference: int = 0
    matched: int = 0
    lost: int = 0  # reference boxes without a match
    gained: int = 0  # other boxes without a match
    ious: list[float] = field(default_factory=list)

    @property
    def matched_fraction(self) -> float:
        return self.matched / self.reference if self.reference else float("nan")

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else float("nan")

    def add(self, ref: Any, other: Any, iou: float = 0.5) -> None:
        """``ref``/``other``: ``detector.Detections`` of one frame."""
        from ..evaluation import iou_matrix

        ious = iou_matrix(ref.boxes, other.boxes)
        same = ref.class_ids[:, None] == other.class_ids[None, :]
        ious = np.where(same, ious, 0.0)
        taken = np.zeros(len(other), dtype=bool)
        for i in np.argsort(-ref.scores, kind="stable"):
            cand = np.where(taken, -1.0, ious[i]) if len(other) else np.zeros(0)
            j = int(cand.argmax()) if len(cand) else -1
            if j >= 0 and cand[j] >= iou:
                taken[j] = True
                self.ious.append(float(cand[j]))
        self.reference += len(ref)
        self.matched += int(taken.sum())
        self.lost += len(ref) - int(taken.sum())
        self.gained += len(other) - int(taken.sum())

    def summary(self) -> str:
        return (
            f"{self.matched}/{self.reference} FP32 boxes matched ({self.matched_fraction:.3f}), "
            f"mean IoU {self.mean_iou:.3f}, lost {self.lost}, gained {self.gained}"
        )
