"""Shared fixtures: the project typestore/factory and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMP_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
MODELS = SHARED / "models"
CACHE = Path(os.environ.get("MMP_CACHE", REPO / ".cache")).resolve()


@pytest.fixture(scope="session")
def typestore():
    return get_project_typestore()


@pytest.fixture(scope="session")
def factory(typestore):
    return RosbagsFactory(typestore)


def roundtrip(typestore, msg):
    """Serialise to CDR and back, as a bag or DDS would."""
    raw = typestore.serialize_cdr(msg, msg.__msgtype__)
    return typestore.deserialize_cdr(raw, msg.__msgtype__)


def need_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data is not beside this clone)")
    return path
