"""What a run was made with, so two reports say which versions they compare: the package
version and git commit (with a dirty flag) of the code, a digest of the parameters in
effect, and each model's name and sha256 (a derived model, e.g. INT8, by its file)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from . import __version__
from .config import Parameters

SOURCE = Path(__file__).resolve().parent


def parameters_digest(params: Parameters) -> str:
    """sha256 of the parameters as canonical JSON (sorted keys): equal settings, equal digest."""
    text = json.dumps(params.values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(where: Path = SOURCE) -> dict[str, Any]:
    """The checkout's HEAD and whether tracked files differ from it; None outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=5, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    head = git("rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "dirty": bool(status) if status is not None else None}


def model_digest(manifest: Any) -> str | None:
    if manifest.sha256:
        return str(manifest.sha256)
    if manifest.path is None:
        return None
    path = Path(manifest.path).parent / manifest.file
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_versions(params: Parameters, models: Any) -> dict[str, Any]:
    """``models``: a loaded ``ModelStack``."""
    manifests = [models.detector.manifest]
    manifests += [m.manifest for m in (models.segmenter, models.lanes) if m is not None]
    return {
        "package": __version__,
        "git": git_commit(),
        "parameters_sha256": parameters_digest(params),
        "models": {m.name: model_digest(m) for m in manifests},
    }
