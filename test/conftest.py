"""Shared fixtures: the project typestore/factory and the real-data location."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import NoReturn

import pytest

from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMP_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
MODELS = SHARED / "models"
CACHE = Path(os.environ.get("MMP_CACHE", REPO / ".cache")).resolve()

# Live ROS 2 tests talk DDS on loopback only, in a domain of their own per test run (child
# processes inherit both), so two runs on one machine never see each other's topics.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the fusion kernels (or load them from numba's cache) once, before any
    test: a node or replay started in a subprocess then finds them cached, as an
    installed package does after its first start."""
    from multimodal_perception.fusion.kernels import warm_up

    warm_up()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(what: str, how: str) -> NoReturn:
    """Skip saying what is missing and how to get it; under CI, where ``make test``
    installs everything and ../shared is beside the clone, fail instead."""
    if in_ci():
        pytest.fail(f"{what} under CI: {how}")
    pytest.skip(f"{what}: {how}")


def need_rclpy():
    """rclpy and the project's interface packages, or skip saying why; under CI a missing
    ROS 2 is a failure (make test installs it with make ros-env)."""
    try:
        import rclpy
        import tf2_msgs.msg  # noqa: F401
        import vision_msgs.msg  # noqa: F401
    except ImportError as exc:
        unavailable(f"ROS 2 (rclpy) is not importable ({exc})", "`make ros-env` installs it")
    return rclpy


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


@pytest.fixture(scope="module")
def ros():
    """An rclpy context for a module's tests (need_rclpy() first)."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


# The surround rig's test bag (sim/surround.py): one second of urban_crossing from 10.5 s,
# four cameras; rendered once per test session (about 20 s on 2 cores).
SURROUND_SECONDS, SURROUND_START_S = 1.0, 10.5


@pytest.fixture(scope="session")
def surround_bag(tmp_path_factory):
    from multimodal_perception.sim.surround import SurroundConfig, write_surround_bag

    out = tmp_path_factory.mktemp("surround") / "bag"
    write_surround_bag(
        out, SurroundConfig(seconds=SURROUND_SECONDS, seed=0, start_s=SURROUND_START_S)
    )
    return out
