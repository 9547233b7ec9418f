"""The command line as a user meets it: one line on stderr and exit 2 for a user's error,
topics that do not match the recording named with what the recording has, --topics auto,
and a warning when the tiny models meet a recording that is not the synthetic world."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fault_corpus import write_bag

from conftest import REPO
from multimodal_perception.ros_pkg.bag_io import iter_bag

SHIPPED = REPO / "bags" / "urban_crossing_5s"
MMP = str(Path(sys.executable).parent / "mmp")


def mmp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MMP, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def renamed(tmp_path_factory) -> Path:
    """The shipped bag's first second with the sensor topics under other names, written as
    a recording of unknown origin (no synthetic-world marker)."""
    names = {
        "/camera/image_raw/compressed": "/front/image/compressed",
        "/camera/camera_info": "/front/camera_info",
        "/lidar/points": "/velodyne_points",
        "/radar/points": "/radar_front/points",
    }
    records = []
    start = None
    for r in iter_bag(SHIPPED):
        start = r.log_time_ns if start is None else start
        if r.log_time_ns - start > 1e9 or r.topic.startswith("/ground_truth"):
            continue
        records.append(r.__class__(names.get(r.topic, r.topic), r.msgtype, r.log_time_ns, r.msg))
    return write_bag(records, tmp_path_factory.mktemp("renamed") / "bag")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", "missing_bag"], "missing_bag does not exist"),
        (["replay", str(SHIPPED), "--set", "filter.treshold.person=0.3"], "did you mean"),
        (["replay", str(SHIPPED), "--set", "sync.timeout_ms=fast"], "sync.timeout_ms='fast'"),
        (["replay", str(SHIPPED), "--model-dir", "/nonexistent"], "/nonexistent does not exist"),
        (["play", "missing_bag"], "missing_bag does not exist"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, needle, tmp_path):
    result = mmp(*args, "--out", str(tmp_path)) if args[0] == "replay" else mmp(*args)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr, lines


def test_topics_that_do_not_match_are_an_error_naming_what_the_bag_has(renamed, tmp_path):
    result = mmp("replay", str(renamed), "--out", str(tmp_path), "--quiet")
    assert result.returncode == 2
    assert "/front/image/compressed (sensor_msgs/msg/CompressedImage)" in result.stderr
    assert "--topics auto" in result.stderr


def test_topics_auto_picks_by_type_and_says_so(renamed, tmp_path):
    result = mmp("replay", str(renamed), "--out", str(tmp_path), "--quiet", "--topics", "auto")
    assert result.returncode == 0, result.stderr
    assert "topics.camera_compressed = /front/image/compressed" in result.stderr
    assert "topics.lidar = /velodyne_points" in result.stderr
    assert "topics.radar = /radar_front/points" in result.stderr
    assert "10 frames" in result.stdout or "11 frames" in result.stdout
    # Not the synthetic world: the tiny models say they will miss objects.
    assert "--model-dir" in result.stderr and "tiny models" in result.stderr


def test_the_synthetic_world_gets_no_tiny_model_warning(tmp_path):
    bag = tmp_path / "bag"
    shutil.copytree(SHIPPED, bag)
    result = mmp("replay", str(bag), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0 and "--model-dir" not in result.stderr
