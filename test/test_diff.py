"""``mmp diff`` and its gate on real replays of the shipped bag: two runs of one
configuration pass a strict gate with no output changed; a raised detector threshold (a
known, injected regression) fails it naming recall and only recall; usage errors are one
line and exit 2. The frame-weighted metrics the bootstrap resamples agree with ``mmp
eval``'s pooled scorer on frames duplicated by the weights; the box comparison names
added, removed, moved and re-classed boxes; ``mmp batch --baseline`` diffs two batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from multimodal_perception.evaluation import DetectionScorer, evaluate_output_bag
from multimodal_perception.replay import replay
from multimodal_perception.run_diff import compare_frame, parse_fail_on
from multimodal_perception.run_metrics import METRICS, FrameOutputs, FrameSet, load_bag_run

SHIPPED = REPO / "bags" / "urban_crossing_5s"
MMP = str(Path(sys.executable).parent / "mmp")
STRICT = "recall:0,precision:0,ap50:0,ap50_before:0,center_error_m:0,mota:0,id_switches:0"


def mmp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MMP, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    settings = {"a": {}, "a_again": {}, "raised_threshold": {"detector.score_threshold": 0.7}}
    return {
        name: replay([SHIPPED], root / name, overrides=o, pictures=0, progress=False).out_dir
        for name, o in settings.items()
    }


def test_two_runs_of_one_configuration_pass_a_strict_gate(runs, tmp_path):
    done = mmp("diff", runs["a"], runs["a_again"], "--fail-on", STRICT, "--out", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed" in done.stdout
    doc = json.loads((tmp_path / "diff.json").read_text())
    (bag,) = doc["bags"]
    assert bag["paired_frames"] == 50
    assert bag["changes"] == {"added": 0, "removed": 0, "moved": 0, "class_changed": 0,
                              "id_changes": 0, "frames_changed": 0}  # fmt: skip
    same = doc["versions"]["a"]["parameters_sha256"] == doc["versions"]["b"]["parameters_sha256"]
    assert same and doc["versions"]["a"]["models"]
    assert (tmp_path / "diff.md").is_file() and (tmp_path / "diff.html").is_file()


def test_an_injected_regression_fails_the_gate_naming_that_metric(runs, tmp_path):
    done = mmp("diff", runs["a"], runs["raised_threshold"], "--out", tmp_path,
               "--fail-on", "recall:-0.02,precision:-0.02")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if line.startswith("REGRESSION")]
    assert len(failed) == 1 and failed[0].startswith("REGRESSION recall:"), done.stdout
    doc = json.loads((tmp_path / "diff.json").read_text())
    recall = next(m for m in doc["pooled"] if m["metric"] == "recall")
    assert recall["delta"] < -0.02 and recall["ci95"][1] < 0  # the interval excludes 0
    assert doc["bags"][0]["changes"]["removed"] > 0 and doc["bags"][0]["most_changed"]
    assert list(tmp_path.glob("*.jpg"))  # side-by-side pictures of the frames that changed
    a, b = (doc["versions"][k]["parameters_sha256"] for k in "ab")
    assert a != b


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--fail-on", "recal:-0.02"], "unknown metric 'recal'"),
        (["--fail-on", "recall:-x"], "expected METRIC:[+-]NUMBER[%]"),
        (["--fail-on", ","], "no bound given"),
    ],
)
def test_gate_usage_errors_are_one_line_and_exit_2(runs, extra, needle):
    done = mmp("diff", runs["a"], runs["a_again"], *extra)
    assert done.returncode == 2 and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_folder_that_is_not_a_run_is_a_usage_error(runs, tmp_path):
    done = mmp("diff", runs["a"], tmp_path)
    assert done.returncode == 2 and "neither a replay output" in done.stderr, done.stderr


def test_weighted_metrics_equal_the_pooled_scorer_on_duplicated_frames(runs):
    run = load_bag_run("a", runs["a"])
    stamps = sorted(run.scored)
    frames = FrameSet([run.scored[s] for s in stamps], [None] * len(stamps),
                      np.full(len(stamps), np.nan))  # fmt: skip
    ones = np.ones((1, len(stamps)))
    pooled = evaluate_output_bag(runs["a"] / "output.mcap", ("car", "truck", "bus", "person",
                                 "cyclist"))  # fmt: skip
    assert METRICS["recall"].compute(frames, ones)[0] == pytest.approx(pooled.after.total_recall())
    assert METRICS["ap50"].compute(frames, ones)[0] == pytest.approx(pooled.after.mean_ap())
    weights = np.random.default_rng(3).integers(0, 4, size=(1, len(stamps)))
    duplicated = DetectionScorer(pooled.after.classes)
    for s, w in zip(stamps, weights[0], strict=True):
        for _ in range(w):
            duplicated.merge(run.scored[s].after)
    assert METRICS["ap50"].compute(frames, weights)[0] == pytest.approx(duplicated.mean_ap())
    assert METRICS["recall"].compute(frames, weights)[0] == pytest.approx(duplicated.total_recall())


def _frame(boxes: list[list[float]], classes: list[str]) -> FrameOutputs:
    n = len(classes)
    return FrameOutputs(np.array(boxes, float).reshape(-1, 4), classes, np.ones(n), [""] * n)


def test_the_box_comparison_names_each_kind_of_change():
    a = _frame([[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60], [80, 80, 90, 90]],
               ["car", "car", "person", "bus"])  # fmt: skip
    b = _frame([[0, 0, 10, 10], [24, 0, 34, 10], [50, 50, 60, 60], [200, 0, 210, 10]],
               ["car", "car", "cyclist", "car"])  # fmt: skip
    pairs, removed, added = compare_frame(a, b)
    ious = {(i, j): round(v, 3) for i, j, v in pairs}
    assert ious[(0, 0)] == 1.0 and ious[(2, 2)] == 1.0
    assert 0.1 <= ious[(1, 1)] < 0.5  # moved
    assert removed == [3] and added == [3]


def test_the_gate_reads_signs_and_percentages():
    bounds = parse_fail_on("recall:-0.02, latency_p95:+20%,mota:0")
    assert [(b.metric, b.limit, b.relative) for b in bounds] == [
        ("recall", -0.02, False), ("latency_p95", 0.2, True), ("mota", 0.0, False)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown metric"):
        parse_fail_on("speed:+1")


def test_batch_baseline_diffs_against_a_previous_batch(tmp_path):
    first = mmp("batch", SHIPPED, "--out", tmp_path / "first", "--workers", "1", "--quiet")
    assert first.returncode == 0, first.stderr
    second = mmp("batch", SHIPPED, "--out", tmp_path / "second", "--workers", "1", "--quiet",
                 "--set", "detector.score_threshold=0.7",
                 "--baseline", tmp_path / "first", "--fail-on", "recall:-0.02")  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert "REGRESSION recall:" in second.stdout
    assert (tmp_path / "second" / "diff" / "diff.json").is_file()
