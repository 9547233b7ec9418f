"""The synchroniser against brute force on real RADIATE stamps, and under abuse."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need_data
from multimodal_perception.datasets.radiate import sensor_stamps
from multimodal_perception.fusion.sync import Outcome, SensorWindow, SyncConfig, Synchronizer

MS = 1_000_000


def radiate_config(**kw) -> SyncConfig:
    # Camera ~15 Hz anchors; lidar 10 Hz and radar ~4 Hz windows of half their period.
    return SyncConfig(
        anchor="camera",
        windows={"lidar": SensorWindow(0, 50 * MS), "radar": SensorWindow(0, 125 * MS)},
        timeout_ns=kw.pop("timeout_ns", 300 * MS),
        **kw,
    )


def brute_force(stamps: dict[str, list[int]], config: SyncConfig) -> list[dict[str, int | None]]:
    out = []
    for t in sorted(set(stamps[config.anchor])):
        row: dict[str, int | None] = {}
        for sensor, w in config.windows.items():
            cands = sorted(s for s in stamps[sensor] if abs(s - (t + w.offset_ns)) <= w.max_skew_ns)
            row[sensor] = min(cands, key=lambda s: abs(s - (t + w.offset_ns))) if cands else None
        out.append(row)
    return out


def run(events, config):
    sync = Synchronizer(config)
    frames = []
    for sensor, stamp in events:
        frames += sync.push(sensor, stamp, (sensor, stamp))
    frames += sync.flush()
    return sync, frames


def partners(frames) -> list[dict[str, int | None]]:
    return [
        {s: (f.partners[s].stamp_ns if s in f.partners else None) for s in ("lidar", "radar")}
        for f in frames
    ]


def merged(stamps: dict[str, list[int]]) -> list[tuple[str, int]]:
    return sorted(((s, t) for s, ts in stamps.items() for t in ts), key=lambda e: e[1])


@pytest.fixture(scope="module")
def radiate():
    return sensor_stamps(need_data("radiate_tiny_foggy", "tiny_foggy"))


@pytest.mark.real_data
def test_real_radiate_stamps_match_brute_force(radiate):
    assert len(radiate["camera"]) == 100 and len(radiate["lidar"]) == 42
    config = radiate_config()
    sync, frames = run(merged(radiate), config)
    expected = brute_force(radiate, config)
    got = partners(frames)
    agree = sum(a == b for a, b in zip(got, expected, strict=True))
    print(
        f"RADIATE: {agree}/{len(expected)} camera frames with brute-force partners; "
        f"outcomes {dict((s, dict(c)) for s, c in sync.counts.items())}"
    )
    assert len(frames) == len(expected) and agree == len(expected)
    # Every message is accounted for, exactly once.
    assert sync.accounted() == {s: len(v) for s, v in radiate.items()}
    assert sync.counts["camera"][Outcome.USED] == 100
    used_lidar = {p["lidar"] for p in expected if p["lidar"] is not None}
    assert sync.counts["lidar"][Outcome.USED] == len(used_lidar)


@pytest.mark.real_data
def test_shuffled_arrival_within_tolerance_gives_same_partners(radiate):
    config = radiate_config(reorder_tolerance_ns=200 * MS, timeout_ns=500 * MS)
    rng = np.random.default_rng(0)
    events = merged(radiate)
    # Each message arrives up to 150 ms late: arrival order is shuffled locally.
    delays = rng.uniform(0, 150 * MS, len(events))
    shuffled = [
        e
        for _, e in sorted(
            zip(np.array([t for _, t in events]) + delays, events, strict=True), key=lambda x: x[0]
        )
    ]
    assert shuffled != events
    sync, frames = run(shuffled, config)
    assert partners(frames) == brute_force(radiate, config)
    assert sync.accounted() == {s: len(v) for s, v in radiate.items()}


@pytest.mark.real_data
def test_duplicates_are_superseded_and_counted(radiate):
    events = merged(radiate)
    dup = [e for e in events for _ in range(2 if e[0] == "lidar" else 1)]
    sync, frames = run(dup, radiate_config())
    assert partners(frames) == brute_force(radiate, radiate_config())
    assert sync.counts["lidar"][Outcome.SUPERSEDED] >= 42
    assert sync.accounted()["lidar"] == 84


@pytest.mark.real_data
def test_backwards_jump_resets_and_counts(radiate):
    events = merged(radiate)
    looped = events + events  # a bag played twice: time jumps back ~6 s
    sync, frames = run(looped, radiate_config())
    assert sync.resets == 1
    assert len(frames) == 200 - sync.counts["camera"][Outcome.TIME_JUMP]
    assert sync.accounted() == {s: 2 * len(v) for s, v in radiate.items()}
    # After the reset the second pass pairs exactly as the first.
    second = partners(frames[-100:])
    assert second == brute_force(radiate, radiate_config())


@pytest.mark.real_data
def test_sensor_that_stops_is_flagged_missing_and_nothing_waits(radiate):
    t_stop = radiate["camera"][50]
    stamps = dict(radiate)
    stamps["lidar"] = [t for t in radiate["lidar"] if t < t_stop]
    sync = Synchronizer(radiate_config())
    frames = []
    for sensor, t in merged(stamps):
        frames += sync.push(sensor, t, None)
    # Without any flush, frames keep coming on the camera's clock, lidar flagged missing.
    late = [f for f in frames if f.stamp_ns > t_stop + 100 * MS]
    assert len(late) >= 40 and all("lidar" in f.missing for f in late)
    assert sync.pending()["camera"] <= 5


def test_partner_arriving_after_its_frame_is_too_old():
    config = SyncConfig(windows={"lidar": SensorWindow(0, 50 * MS)}, timeout_ns=100 * MS)
    sync = Synchronizer(config)
    out = sync.push("camera", 1000 * MS, "c0")
    out += sync.push("camera", 1200 * MS, "c1")  # the clock passes 1000 + timeout
    assert [f.missing for f in out] == [("lidar",)]
    sync.push("lidar", 930 * MS, "late")  # only the emitted 1000 ms frame could reach it
    assert sync.counts["lidar"][Outcome.TOO_OLD] == 1
    sync.push("lidar", 1195 * MS, "ok")
    sync.flush()
    assert sync.counts["lidar"][Outcome.USED] == 1
    assert sync.accounted() == {"camera": 2, "lidar": 2}


def test_bounded_buffers_overflow_is_counted():
    config = SyncConfig(windows={"radar": SensorWindow(0, 10 * MS)}, max_buffer=4)
    sync = Synchronizer(config)
    for k in range(10):  # radar with no camera at all
        sync.push("radar", k * 70 * MS, k)
    assert sync.counts["radar"][Outcome.OVERFLOW] == 6
    sync.flush()
    assert sync.counts["radar"][Outcome.NO_ANCHOR] == 4


def test_offsets_shift_the_window():
    config = SyncConfig(windows={"lidar": SensorWindow(30 * MS, 10 * MS)}, timeout_ns=100 * MS)
    sync = Synchronizer(config)
    sync.push("lidar", 1000 * MS, "at anchor")
    sync.push("lidar", 1028 * MS, "at offset")
    sync.push("camera", 1000 * MS, "c")
    (frame,) = sync.flush()
    assert frame.partners["lidar"].msg == "at offset" and frame.partners["lidar"].skew_ns == -2 * MS


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"windows": {"camera": SensorWindow()}}, "anchor"),
        ({"windows": {"lidar": SensorWindow(0, -1)}}, "max_skew"),
        ({"timeout_ns": 3_000_000_000}, "timeout"),
        ({"max_buffer": 0}, "max_buffer"),
    ],
)
def test_bad_config_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        SyncConfig(**kw)
