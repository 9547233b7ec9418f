"""Model manifests: one YAML per model in ``models/``, validated into :class:`ModelManifest`.

A manifest names the file (relative to the model directory), pins its sha256, gives the
licence and source, the task, the exact input spec (size, layout, dtype, colour order,
scaling, mean/std, letterbox or plain resize, pad value), the decoder family and its
settings, and the class list. Adding a model of a known family is a manifest, not code.

A *derived* manifest (``derived_from``) names a model this project makes locally from a
pinned source model, such as an INT8 quantisation (``quantization``: the recipe's
settings). Its file's digest depends on the tool versions that made it, so instead of a
``sha256`` it pins the source file's digest; the recipe records the produced file's
digest in a sidecar that the loader checks (``runtime.verify_derived_file``).

A segmenter manifest may carry the consistency filter's per-class thresholds fitted for it
(``filter_thresholds``, class names as the detector spells them) and the detectors they
were fitted with (``filter_thresholds_for``); ``ModelStack.filter_thresholds`` applies
them only with one of those detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASKS = ("detection", "segmentation", "lanes", "classification")
DECODERS = {
    "detection": ("yolox", "fastestdet", "yolov8"),
    "segmentation": ("argmax", "logits"),
    "lanes": ("twinlitenet",),
    # ImageNet-1k outputs whose ids are WordNet 3.0 noun offsets: the zero-shot scorer.
    "classification": ("imagenet_wordnet",),
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
    # > 0: a fully convolutional segmenter whose graph may be re-shaped at load to a
    # frame's aspect (``perception.reshape``): its short side becomes fit_stride * k + 1
    # (the output stride; SAME padding then matches the original at every stage).
    fit_stride: int = 0


QUANT_CHOICES = {
    "format": ("QDQ",),
    "activation_type": ("QUInt8", "QInt8"),
    "weight_type": ("QInt8", "QUInt8"),
    "calibrate_method": ("MinMax", "Percentile", "Entropy"),
}


@dataclass(frozen=True)
class Derivation:
    """Where a derived model comes from: the source manifest's name and the digest of the
    source file it must be made from (the same value that manifest pins)."""

    model: str
    sha256: str


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
    derived_from: Derivation | None = None  # made locally; ``sha256`` is then ""
    quantization: dict[str, Any] = field(default_factory=dict)  # the recipe's settings
    # A segmenter's consistency-filter thresholds per detector class, fitted for it with
    # the detectors in ``filter_thresholds_for`` by ``mmp calibrate-filter``.
    filter_thresholds: dict[str, float] = field(default_factory=dict)
    filter_thresholds_for: tuple[str, ...] = ()  # detector manifests they were fitted with


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
    derived = _derivation(doc, where)
    sha = "" if derived else _hex_digest(_require(doc, "sha256", str, where), "sha256", where)
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
            fit_stride=int(raw_in.get("fit_stride", 0)),
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
    if spec.fit_stride not in (0, 8, 16, 32) or (spec.fit_stride and task != "segmentation"):
        raise ManifestError(
            f"{where}: input.fit_stride={spec.fit_stride}: 0, or 8/16/32 for a segmenter"
        )
    if len(spec.mean) != 3 or len(spec.std) != 3 or min(spec.std) <= 0:
        raise ManifestError(f"{where}: input.mean/std need 3 values, std > 0")
    params = doc.get("decoder_params", {}) or {}
    if not isinstance(params, dict):
        raise ManifestError(f"{where}: decoder_params must be a mapping")
    classes = _classes(doc, task, params, where)
    thresholds = doc.get("filter_thresholds", {}) or {}
    fitted_with = doc.get("filter_thresholds_for", []) or []
    if not isinstance(thresholds, dict) or not all(
        isinstance(k, str) and type(v) in (int, float) and 0 <= v <= 1
        for k, v in thresholds.items()
    ):
        raise ManifestError(
            f"{where}: filter_thresholds={thresholds!r}: class name -> number in [0, 1]"
        )
    if thresholds and (task != "segmentation" or not fitted_with):
        raise ManifestError(
            f"{where}: filter_thresholds belong to a segmentation manifest, with "
            "filter_thresholds_for naming the detectors they were fitted with"
        )
    if not isinstance(fitted_with, list) or not all(isinstance(d, str) for d in fitted_with):
        raise ManifestError(
            f"{where}: filter_thresholds_for={fitted_with!r}: a list of detector names"
        )
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
        derived_from=derived,
        quantization=_quantization(doc, where) if derived else {},
        filter_thresholds={k.replace("_", " "): float(v) for k, v in thresholds.items()},
        filter_thresholds_for=tuple(fitted_with),
    )


def _classes(doc: dict[str, Any], task: str, params: dict[str, Any], where: str) -> list[str]:
    """The class list; a classifier's thousand classes may live in a file beside the
    model instead (``decoder_params.classes_file`` with its ``classes_sha256``), read and
    verified by the loader."""
    if task == "classification" and "classes" not in doc:
        if not isinstance(params.get("classes_file"), str):
            raise ManifestError(f"{where}: a classifier needs classes or classes_file")
        _hex_digest(str(params.get("classes_sha256", "")), "classes_sha256", where)
        return []
    classes = _require(doc, "classes", list, where)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise ManifestError(f"{where}: classes must be a non-empty list of names")
    return classes


def _hex_digest(value: str, key: str, where: str) -> str:
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ManifestError(f"{where}: {key}={value!r} is not 64 hex digits")
    return value


def _derivation(doc: dict[str, Any], where: str) -> Derivation | None:
    raw = doc.get("derived_from")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: derived_from must be a mapping {{model, sha256}}")
    if "sha256" in doc:
        # One digest per manifest: a derived file's own digest lives in its sidecar.
        raise ManifestError(f"{where}: a derived manifest pins derived_from.sha256, not sha256")
    model = _require(raw, "model", str, f"{where}: derived_from")
    sha = _hex_digest(_require(raw, "sha256", str, f"{where}: derived_from"), "sha256", where)
    return Derivation(model, sha)


def _quantization(doc: dict[str, Any], where: str) -> dict[str, Any]:
    raw = _require(doc, "quantization", dict, where)
    for key, allowed in QUANT_CHOICES.items():
        if raw.get(key) not in allowed:
            raise ManifestError(
                f"{where}: quantization.{key}={raw.get(key)!r}, expected one of {allowed}"
            )
    if not isinstance(raw.get("per_channel"), bool):
        raise ManifestError(f"{where}: quantization.per_channel must be true or false")
    opset = raw.get("opset", 13)
    if not isinstance(opset, int) or opset < 13:
        # Per-channel QDQ needs DequantizeLinear's axis attribute (opset 13).
        raise ManifestError(f"{where}: quantization.opset={opset!r} must be an integer >= 13")
    keep = raw.get("keep_float", [])
    if not isinstance(keep, list) or not all(isinstance(k, str) and k for k in keep):
        raise ManifestError(
            f"{where}: quantization.keep_float must be a list of node-name prefixes"
        )
    return {**raw, "opset": opset, "keep_float": list(keep)}


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
    for manifest in out.values():
        if manifest.derived_from is not None:
            check_derivation(manifest, out)
    return out


def check_derivation(manifest: ModelManifest, manifests: dict[str, ModelManifest]) -> None:
    """A derived model is the same network as its source: same task, input, decoder and
    classes (decoder settings may differ), made from the file the source manifest pins."""
    if manifest.derived_from is None:
        return
    where = manifest.path or manifest.name
    source = manifests.get(manifest.derived_from.model)
    if source is None:
        raise ManifestError(
            f"{where}: derived_from.model {manifest.derived_from.model!r} has no manifest"
        )
    if source.derived_from is not None:
        raise ManifestError(f"{where}: derived from {source.name}, itself a derived model")
    if manifest.derived_from.sha256 != source.sha256:
        raise ManifestError(
            f"{where}: derived_from.sha256 {manifest.derived_from.sha256} is not the sha256 "
            f"{source.sha256} that {source.name} pins"
        )
    for key in ("task", "input", "decoder", "classes"):
        if getattr(manifest, key) != getattr(source, key):
            raise ManifestError(f"{where}: {key} differs from the source model {source.name}'s")
