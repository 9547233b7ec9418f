"""Finding model files: manifests in ``models/``, files in a model directory.

Real pretrained models live in a model directory (parameter ``models.directory`` or
``MMP_MODEL_DIR``; in development and CI ``../shared/models``). The project-trained tiny
models ship in ``models/`` itself. Without a model directory the project-trained models
are the defaults, and results say so. Models the project derives locally (INT8) are looked
for in the model directory, then in ``<cache>/models`` where their recipe writes them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import cache_dir
from .manifest import ModelManifest, available_manifests, manifest_dir
from .runtime import Backend, ModelLoadError, RuntimeOptions, create_backend

DEFAULT_REAL = {"detection": "yolox_nano_416", "segmentation": "deeplab_mnedgetpu_cityscapes"}
DEFAULT_EMBEDDED = {"detection": "mmp_tinydet_synth", "segmentation": "mmp_tinyseg_synth"}


def model_directory(explicit: str | Path | None = None) -> Path | None:
    """The configured model directory, or None when neither parameter nor env sets one."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MMP_MODEL_DIR")
    return Path(env) if env else None


def resolve_model_path(manifest: ModelManifest, directory: Path | None) -> Path:
    if manifest.trained_by_project:
        return manifest_dir() / manifest.file
    if manifest.derived_from is not None:
        return derived_model_path(manifest, directory)
    if directory is None:
        raise ModelLoadError(
            f"model {manifest.name} needs a model directory (parameter models.directory or "
            f"MMP_MODEL_DIR) holding {manifest.file}"
        )
    return directory / manifest.file


def derived_dir() -> Path:
    """Where the recipes write derived models by default (ignored, never committed)."""
    return cache_dir() / "models"


def derived_model_path(manifest: ModelManifest, directory: Path | None) -> Path:
    """The model directory's copy when it has one, else the cache's (which may not exist:
    loading then fails naming the recipe to run)."""
    if directory is not None and (directory / manifest.file).exists():
        return directory / manifest.file
    return derived_dir() / manifest.file


def default_model(task: str, directory: Path | None) -> str:
    """The real model for ``task`` when a model directory was asked for, else the
    project-trained one. A directory that was asked for and does not hold the model is an
    error, never a silent fallback to the tiny models."""
    real = DEFAULT_REAL.get(task)
    if directory is None or real is None:
        return DEFAULT_EMBEDDED[task]
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist")
    manifest = available_manifests()[real]
    if not (directory / manifest.file).exists():
        raise ModelLoadError(
            f"model directory {directory} has no {manifest.file} (the default {task} model "
            f"{real}); name another with models.detector / models.segmenter"
        )
    return real


def load_model(
    name: str, directory: Path | None = None, options: RuntimeOptions | None = None
) -> tuple[ModelManifest, Backend]:
    manifests = available_manifests()
    if name not in manifests:
        raise ModelLoadError(
            f"no manifest for model {name!r} in {manifest_dir()}; known: {sorted(manifests)}"
        )
    manifest = manifests[name]
    path = resolve_model_path(manifest, directory)
    return manifest, create_backend(manifest, path, options or RuntimeOptions())
