"""Default locations: the shared data/model directories and the ignored cache.

``MMP_DATA_DIR`` / ``MMP_MODEL_DIR`` override the defaults (``../shared/data`` and
``../shared/models`` beside the repository, as in development and CI).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("MMP_SHARED_DIR", REPO_ROOT.parent / "shared"))


def data_dir() -> Path:
    return Path(os.environ.get("MMP_DATA_DIR", shared_dir() / "data"))


def model_dir() -> Path:
    return Path(os.environ.get("MMP_MODEL_DIR", shared_dir() / "models"))


def cache_dir() -> Path:
    return Path(os.environ.get("MMP_CACHE_DIR", REPO_ROOT / ".cache"))
