"""Model manifests: one YAML per model in ``models/``, validated into :class:`ModelManifest`.

A manifest names the file (relative to the model directory), pins its sha256, gives the
licence and source, the task, the exact input spec (size, layout, dtype, colour order,
scaling, mean/std, letterbox or plain resize, pad value), the decoder family and its
settings, and the class list. Adding a model of a known family is a manifest, not code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASKS = ("detection", "segmentation", "lanes")
DECODERS = {
    "detection": ("yolox", "fastestdet", "yolov8"),
    "segmentation": ("argmax", "logits"),
    "lanes": ("twinlitenet",),
}


class ManifestError(ValueError):
    """A manifest that does not describe a usable model; names the file and the key."""


@dataclass(frozen=True)
class InputSpec:
    width: int
    height: int
    layout: str = "NCHW"  # or NHWC
    dtype: str = "float32"  # or uint8
    colour: str = "BGR"  # or RGB
    scale: float = 1.0  # pixel * scale, then (x - mean) / std
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"  # or "stretch"
    pad_value: int = 114
    name: str | None = None  # input tensor name (default: the model's first input)


@dataclass(frozen=True)
class ModelManifest:
    name: str
    task: str
    file: str
    sha256: str
    licence: str
    source: str
    input: InputSpec
    decoder: str
    classes: tuple[str, ...]
    decoder_params: dict[str, Any] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    trained_by_project: bool = False
    path: Path | None = None  # the manifest file


def _require(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in doc:
        raise ManifestError(f"{where}: missing key {key!r}")
    value = doc[key]
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise ManifestError(f"{where}: {key}={value!r} should be {kind.__name__}")
    return value


def parse_manifest(doc: dict[str, Any], where: str) -> ModelManifest:
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a mapping")
    task = _require(doc, "task", str, where)
    if task not in TASKS:
        raise ManifestError(f"{where}: task={task!r}, expected one of {TASKS}")
    decoder = _require(doc, "decoder", str, where)
    if decoder not in DECODERS[task]:
        raise ManifestError(
            f"{where}: decoder={decoder!r} is not a {task} decoder {DECODERS[task]}"
        )
    sha = _require(doc, "sha256", str, where).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{where}: sha256={sha!r} is not 64 hex digits")
    raw_in = _require(doc, "input", dict, f"{where}")
    try:
        spec = InputSpec(
            width=int(raw_in["width"]),
            height=int(raw_in["height"]),
            layout=str(raw_in.get("layout", "NCHW")),
            dtype=str(raw_in.get("dtype", "float32")),
            colour=str(raw_in.get("colour", "BGR")),
            scale=float(raw_in.get("scale", 1.0)),
            mean=tuple(float(v) for v in raw_in.get("mean", (0.0, 0.0, 0.0))),
            std=tuple(float(v) for v in raw_in.get("std", (1.0, 1.0, 1.0))),
            resize=str(raw_in.get("resize", "letterbox")),
            pad_value=int(raw_in.get("pad_value", 114)),
            name=raw_in.get("name"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: input spec: {exc!r}") from None
    for key, value, allowed in (
        ("layout", spec.layout, ("NCHW", "NHWC")),
        ("dtype", spec.dtype, ("float32", "uint8")),
        ("colour", spec.colour, ("BGR", "RGB")),
        ("resize", spec.resize, ("letterbox", "stretch")),
    ):
        if value not in allowed:
            raise ManifestError(f"{where}: input.{key}={value!r}, expected one of {allowed}")
    if not (8 <= spec.width <= 8192 and 8 <= spec.height <= 8192):
        raise ManifestError(f"{where}: input size {spec.width}x{spec.height} out of range")
    if len(spec.mean) != 3 or len(spec.std) != 3 or min(spec.std) <= 0:
        raise ManifestError(f"{where}: input.mean/std need 3 values, std > 0")
    classes = _require(doc, "classes", list, where)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise ManifestError(f"{where}: classes must be a non-empty list of names")
    params = doc.get("decoder_params", {}) or {}
    if not isinstance(params, dict):
        raise ManifestError(f"{where}: decoder_params must be a mapping")
    return ModelManifest(
        name=_require(doc, "name", str, where),
        task=task,
        file=_require(doc, "file", str, where),
        sha256=sha,
        licence=_require(doc, "licence", str, where),
        source=_require(doc, "source", str, where),
        input=spec,
        decoder=decoder,
        classes=tuple(classes),
        decoder_params=dict(params),
        urls=tuple(doc.get("urls", ()) or ()),
        trained_by_project=bool(doc.get("trained_by_project", False)),
    )


def load_manifest(path: str | Path) -> ModelManifest:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from None
    manifest = parse_manifest(doc, str(path))
    return ModelManifest(**{**manifest.__dict__, "path": path})


MANIFEST_DIR = Path(__file__).resolve().parents[1] / "models"


def manifest_dir() -> Path:
    """``models/`` of the source tree; else ``share/multimodal_perception/models`` of a
    colcon install (ament index) or of a plain pip install (``sys.prefix``)."""
    if MANIFEST_DIR.is_dir():
        return MANIFEST_DIR
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("multimodal_perception")) / "models"
    except Exception:
        import sys

        return Path(sys.prefix) / "share" / "multimodal_perception" / "models"


def available_manifests(directory: Path | None = None) -> dict[str, ModelManifest]:
    directory = directory or manifest_dir()
    out = {}
    for path in sorted(directory.glob("*.yaml")):
        manifest = load_manifest(path)
        out[manifest.name] = manifest
    return out
