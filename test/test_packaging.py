"""The built wheel, not the checkout: every package folder is in it, every module imports
from it, and its ``mmp`` runs and finds the shipped model manifests in ``share/``.

The wheel is built from a copy of the working tree and installed without dependencies into
a fresh venv (no pip, no system site-packages) that sees this venv's third-party packages
through a ``.pth`` path line. A plain path line does not run the ``.pth`` files of that
folder, so the editable install of this checkout stays out of the way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = "multimodal_perception"
# Source folders and where they land in the package (setup.py: package_dir).
ROOTS = {PACKAGE: PACKAGE, "ros_pkg": "ros_pkg", "perception": "perception"}
ROOTS |= {"fusion": "fusion", "sim": "sim"}
# Only these may be missing here (no ROS 2 in this venv): the modules that need them skip.
ROS_ONLY = ("rclpy", "launch", "launch_ros", "ament_index_python", "tf2_ros", "rosidl_runtime_py")
SKIP_COPY = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "out", "build", "install", "log", "*.egg-info", "__pycache__"
)
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import multimodal_perception as pkg
absent = set(sys.argv[1].split(",")) - {""}
done, skipped, failed = [], [], {}
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    try:
        importlib.import_module(info.name)
        done.append(info.name)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        (skipped.append(info.name) if root in absent else failed.update({info.name: repr(exc)}))
    except Exception as exc:
        failed[info.name] = repr(exc)
print(json.dumps({"file": pkg.__file__, "done": done, "skipped": skipped, "failed": failed}))
"""


def _source_modules() -> set[str]:
    """Dotted names of every .py file under the package's source folders."""
    names = set()
    for root, dest in ROOTS.items():
        for path in (REPO / root).rglob("*.py"):
            rel = path.relative_to(REPO / root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.add(".".join([PACKAGE] + ([] if dest == PACKAGE else [dest]) + parts))
    return names


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP_COPY)
    pip = [sys.executable, "-m", "pip"]
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")]
    subprocess.run([*pip, *build, str(src)], check=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob(f"{PACKAGE}-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This venv's third-party packages, as a plain path (its .pth files are not run).
    (Path(purelib) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the checkout's own install is visible through the .pth path, and
    # pip would otherwise take it as already satisfied.
    install = ["--python", str(py), "install", "-q", "--no-deps", "--ignore-installed", str(wheel)]
    subprocess.run([*pip, *install], check=True, cwd=tmp)
    return wheel


@pytest.mark.slow
def test_wheel_holds_every_source_module_and_the_share_files(installed):
    names = zipfile.ZipFile(installed).namelist()
    in_wheel = {
        n[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for n in names
        if n.endswith(".py") and n.startswith(f"{PACKAGE}/")
    }
    missing = _source_modules() - in_wheel
    assert not missing, f"source modules left out of the wheel: {sorted(missing)}"
    assert f"{PACKAGE}.perception.training.train_all" in in_wheel
    share = [n.split("/data/share/", 1)[1] for n in names if "/data/share/" in n]
    for expected in (
        f"{PACKAGE}/package.xml",
        f"{PACKAGE}/models/mmp_tinydet_synth.onnx",
        f"{PACKAGE}/models/mmp_tinydet_synth.yaml",
        f"{PACKAGE}/config/perception.yaml",
        f"{PACKAGE}/bags/urban_crossing_5s/metadata.yaml",
    ):
        assert expected in share, expected
    assert any(n.startswith(f"{PACKAGE}/ros_pkg/msg/") and n.endswith(".msg") for n in names)


@pytest.mark.slow
def test_every_module_imports_from_the_installed_wheel(installed, tmp_path):
    venv = installed.parents[1] / "venv"
    absent = [m for m in ROS_ONLY if importlib.util.find_spec(m) is None]
    run = subprocess.run(
        [venv / "bin" / "python", "-c", IMPORT_ALL, ",".join(absent)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # nothing of the checkout on sys.path
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(venv), result["file"]
    assert not result["failed"], result["failed"]
    print(f"{len(result['done'])} modules imported; skipped for want of ROS 2: {result['skipped']}")
    assert set(result["done"]) | set(result["skipped"]) == _source_modules() - {PACKAGE}
    assert all(m.startswith(f"{PACKAGE}.ros_pkg.") for m in result["skipped"])


@pytest.mark.slow
def test_installed_mmp_runs_and_finds_the_shipped_manifests(installed, tmp_path):
    mmp = installed.parents[1] / "venv" / "bin" / "mmp"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMP_")}
    help_text = subprocess.run(
        [mmp, "--help"], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    ).stdout
    assert "replay" in help_text and "make-bag" in help_text
    listed = subprocess.run(
        [mmp, "models", "list"], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    ).stdout
    assert "mmp_tinydet_synth" in listed and "mmp_tinyseg_synth" in listed, listed
