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


@pytest.fixture(scope="module")
def shipped_replay(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    assert mmp("replay", str(SHIPPED), "--out", str(out), "--quiet").returncode == 0
    return out


def test_eval_without_ground_truth_is_an_error_not_nan(renamed, tmp_path):
    out = tmp_path / "out"
    assert (
        mmp("replay", str(renamed), "--out", str(out), "--quiet", "--topics", "auto").returncode
        == 0
    )
    result = mmp("eval", str(out))
    assert result.returncode == 2 and "--gt" in result.stderr and "nan" not in result.stdout


def test_eval_takes_labels_from_a_json_file(shipped_replay, tmp_path):
    """Labels written from the bag's own ground truth score exactly as the topics do."""
    import json

    frames = []
    for r in iter_bag(shipped_replay / "output.mcap", ["/ground_truth/boxes_2d"]):
        boxes = [
            {
                "class": d.results[0].hypothesis.class_id,
                "box_2d": [
                    d.bbox.center.position.x - d.bbox.size_x / 2,
                    d.bbox.center.position.y - d.bbox.size_y / 2,
                    d.bbox.center.position.x + d.bbox.size_x / 2,
                    d.bbox.center.position.y + d.bbox.size_y / 2,
                ],
            }
            for d in r.msg.detections
        ]
        stamp = r.msg.header.stamp.sec * 10**9 + r.msg.header.stamp.nanosec
        frames.append({"stamp_ns": stamp, "boxes": boxes})
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"schema": "mmp.labels/1", "frames": frames}))
    from_topics = mmp("eval", str(shipped_replay))
    from_file = mmp("eval", str(shipped_replay), "--gt", str(labels))
    assert from_file.returncode == 0, from_file.stderr

    def recall_lines(text: str) -> list[str]:
        return [ln.split("all recall")[1] for ln in text.splitlines() if "all recall" in ln]

    assert recall_lines(from_file.stdout) and recall_lines(from_file.stdout) == recall_lines(
        from_topics.stdout
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else", "frames": []}')
    result = mmp("eval", str(shipped_replay), "--gt", str(bad))
    assert result.returncode == 2 and "mmp.labels/1" in result.stderr


def test_progress_lines_when_not_a_terminal():
    import io

    from multimodal_perception.progress import Progress

    stream = io.StringIO()
    bar = Progress(0, 10 * 10**9, stream=stream, interval_s=0.0)
    for t in (1, 5, 9):
        bar.update(t * 10**9, frames=t * 10, drops=t)
    bar.close(10 * 10**9, frames=100, drops=9)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert "5.0/10.0 s of bag" in lines[1] and "5 dropped" in lines[1] and "ETA" in lines[1]
    assert lines[-1].startswith("[" + "#" * 28 + "]") and "9 dropped" in lines[-1]


def test_replay_prints_progress_and_quiet_silences_it(tmp_path):
    loud = mmp("replay", str(SHIPPED), "--out", str(tmp_path / "a"))
    quiet = mmp("replay", str(SHIPPED), "--out", str(tmp_path / "b"), "--quiet")
    assert "5.0/5.0 s of bag" in loud.stderr and "s of bag" not in quiet.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"/**:\n  ros__parameters:\n    filter: {default_threshold: 0.4\x00}\n",
         "character #x0000 is not allowed in YAML"),
        (b"/**:\n  ros__parameters:\n    filter: [1, 2\n", "not valid YAML at line"),
        (b"\xff\xfe/**: {}\n", "not UTF-8 text"),
    ],
    ids=["nul-byte", "unclosed", "not-utf8"],
)  # fmt: skip
def test_a_broken_params_file_is_one_line_naming_it_and_exit_2(content, needle, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes(content)
    result = mmp("replay", str(SHIPPED), "--params", str(params), "--out", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and str(params) in lines[0], lines
