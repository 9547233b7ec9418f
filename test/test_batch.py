"""``mmp batch``: the process pool and a real local Ray over four 1 s bags cut from the shipped
bag and one garbage bag; outputs equal sequential ``replay()``, failures are one line, a
rerun skips what is done (and redoes a bag whose file changed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from multimodal_perception.batch import HASH_FILE, BatchConfig, run_batch
from multimodal_perception.cli import main
from multimodal_perception.replay import replay
from multimodal_perception.ros_pkg.bag_io import BagWriter, bag_metadata, iter_bag

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bags" / "urban_crossing_5s"
PIECES = [f"piece_{i}" for i in range(4)]


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 1 s bags (each with /tf_static at its start) and a garbage .mcap."""
    root = tmp_path_factory.mktemp("bags")
    records = list(iter_bag(SOURCE))
    t0 = records[0].log_time_ns
    static = [r for r in records if r.topic == "/tf_static"]
    for i, name in enumerate(PIECES):
        a, b = t0 + i * 10**9, t0 + (i + 1) * 10**9
        with BagWriter(root / name, custom_data=bag_metadata(SOURCE)) as w:
            for r in static:
                w.write(r.topic, r.msg, a)
            for r in records:
                if r.topic != "/tf_static" and a <= r.log_time_ns < b:
                    w.write(r.topic, r.msg, r.log_time_ns)
    (root / "garbage.mcap").write_bytes(b"this is not a bag\n" * 200)
    return root


@pytest.fixture(scope="module")
def sequential(bags: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sequential")
    for name in PIECES:
        replay([bags / name], out / name, progress=False)
    return out


def _report(folder: Path) -> dict[str, Any]:
    report = json.loads((folder / "report.json").read_text())
    report.pop("timing")
    return report


def _scenes(folder: Path) -> list[dict[str, Any]]:
    scenes = []
    for r in iter_bag(folder / "output.mcap", ["/multimodal_perception/scene"]):
        scene = json.loads(r.msg.data)
        scene.pop("latency_ms", None)
        scenes.append(scene)
    return scenes


def _check(batch: dict[str, Any], out: Path, sequential: Path, workers: int) -> None:
    rows = {r["name"]: r for r in batch["bags"]}
    assert list(rows) == ["garbage", *PIECES]  # sorted glob order
    bad = rows["garbage"]
    assert bad["status"] == "failed"
    assert "\n" not in bad["reason"] and "garbage.mcap" in bad["reason"], bad["reason"]
    assert not (out / "garbage" / HASH_FILE).exists()
    assert batch["totals"] == batch["totals"] | {"ok": 4, "failed": 1, "skipped": 0}
    for name in PIECES:
        row = rows[name]
        assert row["status"] == "ok" and row["balanced"] and row["frames"] >= 9
        assert _report(out / name) | {"bags": None} == _report(sequential / name) | {"bags": None}
        assert _scenes(out / name) == _scenes(sequential / name)
        assert (out / name / HASH_FILE).is_file() and (out / name / "report.html").is_file()
    # models are loaded once per worker: at most `workers` processes ran the bags
    assert 1 <= len({rows[n]["pid"] for n in PIECES}) <= workers
    for name in ("batch.json", "batch.md", "batch.html"):
        assert (out / name).is_file()
    assert "piece_0/report.html" in (out / "batch.html").read_text()


def test_process_pool(bags: Path, sequential: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch"
    batch = run_batch([str(bags / "*")], out, BatchConfig(), workers=2, progress=False)
    assert batch["executor"] == "process_pool"
    _check(batch, out, sequential, 2)
    # rerun through the CLI: finished bags are skipped, a bag whose file changed is redone,
    # the garbage bag fails again (exit status 1)
    mcap = bags / "piece_1" / "piece_1.mcap"
    os.utime(mcap, ns=(mcap.stat().st_atime_ns, mcap.stat().st_mtime_ns + 10**9))
    assert main(["batch", str(bags / "*"), "--out", str(out), "--workers", "2", "--quiet"]) == 1
    rows = {r["name"]: r for r in json.loads((out / "batch.json").read_text())["bags"]}
    assert {n: rows[n]["status"] for n in rows} == {
        "garbage": "failed",
        "piece_0": "skipped",
        "piece_1": "ok",
        "piece_2": "skipped",
        "piece_3": "skipped",
    }
    assert rows["piece_0"]["frames"] >= 9  # skipped rows still carry the bag's numbers


def test_ray(bags: Path, sequential: Path, tmp_path: Path) -> None:
    if os.environ.get("CI") != "true":
        pytest.importorskip("ray")
    out = tmp_path / "batch"
    batch = run_batch(
        [str(bags / "*")], out, BatchConfig(), ray_address="local", workers=2, progress=False
    )
    assert batch["executor"] == "ray" and batch["workers"] == 2
    _check(batch, out, sequential, 2)
    pieces = [str(bags / name) for name in PIECES]
    again = run_batch(pieces, out, BatchConfig(), ray_address="local", progress=False)
    assert [r["status"] for r in again["bags"]] == ["skipped"] * 4  # Ray not even started


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "none_*"), "--out", str(tmp_path / "o")]) == 2
    assert "no bag matches" in capsys.readouterr().err
    args = ["batch", str(SOURCE), "--out", str(tmp_path / "o"), "--set", "sync.max_buffer=x"]
    assert main(args) == 2
