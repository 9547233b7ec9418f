"""The one place that creates inference sessions.

onnxruntime with an ordered provider list (TensorRT with FP16 and an engine cache, then
CUDA, then CPU), falling back to what this build of onnxruntime offers; the provider that
actually runs is logged and reported. Thread settings, warm-up, and IO binding for GPU
outputs. A TorchScript backend serves PyTorch models behind the same interface; torch is
imported only when that backend is asked for. Model files are checked before loading:
missing, unreadable, not the manifest's sha256, or not loadable fails fast, naming the
path and the reason. A model made locally (a derived manifest, e.g. INT8) is checked
against the provenance sidecar its recipe wrote: made from the pinned source file, with
the manifest's settings, and still the file the recipe produced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .manifest import ModelManifest

log = logging.getLogger("multimodal_perception.runtime")


class ModelLoadError(RuntimeError):
    """A model that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RuntimeOptions:
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    intra_op_threads: int = 0  # 0: onnxruntime's default
    fp16: bool = True  # TensorRT FP16
    trt_cache_dir: str = ".cache/trt_engines"
    device_id: int = 0
    warmup_runs: int = 1
    spin: bool = False  # let idle inference threads spin (only for a lone model)


_ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


BACKGROUND_NICE = 10


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Run the calling thread at ``nice`` (never raising it back): Linux schedules threads,
    so a background model's worker (and the inference it runs inline on a one-thread
    onnxruntime session) yields the cores to the sensor path. Best effort elsewhere."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except (AttributeError, OSError):
        pass


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(path: Path, expected_sha256: str | None) -> None:
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelLoadError(f"model file {path} is not a regular file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file {path} is empty")
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise ModelLoadError(
                f"model file {path}: sha256 {actual} differs from the manifest's "
                f"{expected_sha256} (corrupt, truncated or a different release)"
            )


PROVENANCE_SCHEMA = "mmp.derived_model/1"


def provenance_path(model_path: Path) -> Path:
    """The sidecar a recipe writes beside a derived model file."""
    return model_path.with_name(model_path.name + ".provenance.json")


def verify_derived_file(manifest: ModelManifest, path: Path) -> None:
    """Check a derived model against its sidecar and its manifest. The sidecar is not a
    signature: it catches a stale, mixed-up, truncated or hand-replaced file, not tampering
    by someone who rewrites both."""
    if manifest.derived_from is None:
        raise ModelLoadError(f"{manifest.name} is not a derived model")
    remake = f"re-run scripts/quantize_models.py {manifest.name}"
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist ({remake})")
    sidecar = provenance_path(path)
    try:
        doc = json.loads(sidecar.read_text())
        made_from, settings, digest = doc["source"], doc["recipe"], doc["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"model file {path}: no readable provenance {sidecar.name} ({type(exc).__name__}); "
            f"{remake}"
        ) from None
    if doc.get("schema") != PROVENANCE_SCHEMA or not isinstance(made_from, dict):
        raise ModelLoadError(f"{sidecar}: not a {PROVENANCE_SCHEMA} file; {remake}")
    want = (manifest.derived_from.model, manifest.derived_from.sha256)
    if (made_from.get("model"), made_from.get("sha256")) != want:
        raise ModelLoadError(
            f"model file {path} was made from {made_from.get('model')} sha256 "
            f"{made_from.get('sha256')}, not the pinned {want[0]} {want[1]}; {remake}"
        )
    if settings != manifest.quantization:
        raise ModelLoadError(
            f"model file {path} was made with other settings than manifest "
            f"{manifest.path or manifest.name} declares; {remake}"
        )
    verify_model_file(path, None)
    actual = sha256_of(path)
    if actual != digest:
        raise ModelLoadError(
            f"model file {path}: sha256 {actual} differs from the {digest} its recipe recorded "
            f"in {sidecar.name} (changed after it was made); {remake}"
        )


class Backend(Protocol):
    provider: str
    input_names: list[str]
    input_shapes: list[list[Any]]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class OrtBackend:
    session: Any
    provider: str
    input_names: list[str]
    input_shapes: list[list[Any]]
    output_names: list[str]
    io_binding: bool = False
    _binding: Any = field(default=None, repr=False)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.io_binding:
            return self.session.run(self.output_names, feeds)
        # GPU: bind inputs from host memory and let outputs stay where ORT puts them,
        # copying back once (avoids per-output device-host round trips).
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def _provider_list(options: RuntimeOptions, available: list[str]) -> list[Any]:
    out: list[Any] = []
    for name in options.providers:
        ort_name = _ORT_NAMES.get(name)
        if ort_name is None:
            raise ModelLoadError(f"unknown execution provider {name!r}; use {list(_ORT_NAMES)}")
        if ort_name not in available:
            continue
        if name == "tensorrt":
            Path(options.trt_cache_dir).mkdir(parents=True, exist_ok=True)
            out.append(
                (
                    ort_name,
                    {
                        "device_id": options.device_id,
                        "trt_fp16_enable": options.fp16,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": options.trt_cache_dir,
                    },
                )
            )
        elif name == "cuda":
            out.append((ort_name, {"device_id": options.device_id}))
        else:
            out.append(ort_name)
    if not out:
        out.append("CPUExecutionProvider")
    return out


def create_onnx_backend(
    path: Path, options: RuntimeOptions = RuntimeOptions(), model: bytes | None = None
) -> OrtBackend:
    """``model``: the serialised graph to run instead of reading ``path`` (a graph derived
    in memory from that verified file, ``perception.reshape``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if options.intra_op_threads:
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not options.spin:
        # Idle intra-op threads spin by default; with a detector and a segmenter taking
        # turns (plus numpy), the spinning pool of one steals the cores of the other.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    providers = _provider_list(options, ort.get_available_providers())
    try:
        source = model if model is not None else str(path)
        session = ort.InferenceSession(source, sess_options=so, providers=providers)
    except Exception as exc:
        raise ModelLoadError(
            f"model file {path} cannot be loaded by onnxruntime: {str(exc).splitlines()[0]}"
        ) from None
    active = session.get_providers()[0]
    inputs = session.get_inputs()
    backend = OrtBackend(
        session,
        active,
        [i.name for i in inputs],
        [list(i.shape) for i in inputs],
        [o.name for o in session.get_outputs()],
        io_binding=active in ("CUDAExecutionProvider", "TensorrtExecutionProvider"),
    )
    log.info(
        "%s runs on %s (asked for %s)",
        path.name,
        active,
        [p if isinstance(p, str) else p[0] for p in providers],
    )
    return backend


@dataclass
class TorchBackend:
    """A TorchScript module behind the same interface (inputs in the manifest's order)."""

    module: Any
    provider: str
    input_names: list[str]
    input_shapes: list[list[Any]]
    output_names: list[str]
    half: bool = False

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        device = "cuda" if self.provider == "torch-cuda" else "cpu"
        args = []
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).to(device)
            args.append(t.half() if self.half and t.is_floating_point() else t)
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.float().cpu().numpy() for o in outs]


def create_torch_backend(path: Path, input_shape: list[int], fp16: bool = True) -> TorchBackend:
    try:
        import torch
    except ImportError:
        raise ModelLoadError(
            f"{path}: the torch backend needs PyTorch (pip install 'multimodal_perception[torch]')"
        ) from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        # A TorchScript archive is code plus tensors, read by TorchScript's restricted
        # loader (no arbitrary Python objects); and create_backend only gets here after
        # the file's sha256 matched the manifest, so only a pinned file is loaded.
        module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:
        raise ModelLoadError(
            f"model file {path} is not a loadable TorchScript module: {str(exc).splitlines()[0]}"
        ) from None
    half = fp16 and device == "cuda"
    if half:
        module = module.half()
    return TorchBackend(module, f"torch-{device}", ["input"], [input_shape], ["output"], half)


def create_backend(
    manifest: ModelManifest, path: Path, options: RuntimeOptions = RuntimeOptions()
) -> Backend:
    """Verify the file against the manifest, load it, check the input shape, warm up."""
    if manifest.derived_from is not None:
        verify_derived_file(manifest, path)
    else:
        verify_model_file(path, manifest.sha256)
    spec = manifest.input
    if path.suffix in (".pt", ".ts", ".torchscript"):
        shape = (
            [1, 3, spec.height, spec.width]
            if spec.layout == "NCHW"
            else [1, spec.height, spec.width, 3]
        )
        backend: Backend = create_torch_backend(path, shape, options.fp16)
    else:
        backend = create_onnx_backend(path, options)
        check_input_shape(manifest, path, backend)
    dtype = np.uint8 if spec.dtype == "uint8" else np.float32
    shape = backend.input_shapes[0]
    dummy_shape = [1 if not isinstance(d, int) or d <= 0 else d for d in shape]
    for _ in range(options.warmup_runs):
        backend.run({backend.input_names[0]: np.zeros(dummy_shape, dtype)})
    return backend


def check_input_shape(manifest: ModelManifest, path: Path, backend: Backend) -> None:
    spec = manifest.input
    shape = backend.input_shapes[0]
    if len(shape) != 4:
        raise ModelLoadError(
            f"model file {path}: input {backend.input_names[0]} has shape "
            f"{shape}, expected 4 dimensions"
        )
    want = [spec.height, spec.width]
    have = shape[2:4] if spec.layout == "NCHW" else shape[1:3]
    channels = shape[1] if spec.layout == "NCHW" else shape[3]
    fixed = [isinstance(d, int) and d > 0 for d in have]
    if (all(fixed) and have != want) or (isinstance(channels, int) and channels != 3):
        raise ModelLoadError(
            f"manifest {manifest.path or manifest.name} declares input {spec.layout} "
            f"{spec.height}x{spec.width}x3 but {path} takes {shape}"
        )
