"""The ``latest`` partner policy: a frame takes the newest lidar/radar message already
received, never one stamped after the camera, never one older than max_age, and goes out
the moment its camera image arrives (no waiting). Messages are pushed in arrival order
(stamp + a random transport delay), as a live node and a log-time replay see them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal_perception.fusion.sync import SensorWindow, SyncConfig, Synchronizer

MS = 1_000_000


def _config(max_age_ms: int = 150) -> SyncConfig:
    return SyncConfig(
        windows={
            "lidar": SensorWindow(0, 50 * MS, "latest", max_age_ms * MS),
            "radar": SensorWindow(0, 38 * MS, "latest", 120 * MS),
        },
        timeout_ns=150 * MS,
    )


@st.composite
def arrivals(draw):
    """(arrival time, sensor, stamp) in arrival order: 10 Hz camera and lidar, 13 Hz radar,
    each with its own phase, jitter and transport delay (so lidar may overtake the camera)."""
    out = []
    for sensor, period, n in (("camera", 100, 30), ("lidar", 100, 30), ("radar", 77, 39)):
        phase = draw(st.integers(0, 99))
        for k in range(n):
            stamp = (phase + k * period + draw(st.integers(0, 5))) * MS
            delay = draw(st.integers(1, 60)) * MS
            out.append((stamp + delay, sensor, stamp))
    out.sort()
    return out


@settings(max_examples=60, deadline=None)
@given(arrivals(), st.integers(20, 200))
def test_latest_uses_the_newest_received_message_within_age_and_never_a_later_one(
    stream, max_age_ms
):
    sync = Synchronizer(_config(max_age_ms))
    received: dict[str, list[int]] = {"lidar": [], "radar": []}
    frames = []
    for _, sensor, stamp in stream:
        if sensor != "camera":
            received[sensor].append(stamp)
        out = sync.push(sensor, stamp, (sensor, stamp))
        if sensor == "camera":
            # zero wait: the camera's own push emits its frame (unless it is too old: a
            # frame stamped later went out already)
            last = max((f.stamp_ns for f in frames), default=-1)
            assert [g.stamp_ns for g in out] == ([stamp] if stamp > last else [])
            expected = {}
            for s, stamps in received.items():
                age = max_age_ms * MS if s == "lidar" else 120 * MS
                ok = [t for t in stamps if stamp - age <= t <= stamp]
                expected[s] = max(ok) if ok else None
            for g in out:
                for s in ("lidar", "radar"):
                    got = g.partners.get(s)
                    assert (got.stamp_ns if got else None) == expected[s], (s, g.stamp_ns)
                    if got is not None:
                        assert got.stamp_ns <= g.stamp_ns  # never after the camera
                        assert g.stamp_ns - got.stamp_ns <= (
                            max_age_ms * MS if s == "lidar" else 120 * MS
                        )
                        assert got.extrapolated_ns == g.stamp_ns - got.stamp_ns
                    else:
                        assert s in g.missing
        else:
            assert out == []  # partners never complete a frame under latest
        frames += out
    frames += sync.flush()
    # every message accounted for exactly once
    assert sync.accounted() == {s: sync.received[s] for s in sync.accounted()}


def test_a_partner_arriving_after_its_camera_is_left_to_later_frames():
    sync = Synchronizer(_config())
    assert sync.push("lidar", 0, "L0") == []
    (g,) = sync.push("camera", 90 * MS, "C1")  # the sweep at 100 ms is not in yet
    assert g.partners["lidar"].msg == "L0" and g.partners["lidar"].extrapolated_ns == 90 * MS
    assert sync.push("lidar", 100 * MS, "L1") == []
    (g,) = sync.push("camera", 190 * MS, "C2")
    assert g.partners["lidar"].msg == "L1"
    # a sweep older than max_age is never used
    (g,) = sync.push("camera", 400 * MS, "C3")
    assert "lidar" in g.missing
    sync.flush()
    assert sync.counts["lidar"]["used"] == 2 and sync.accounted() == {
        s: sync.received[s] for s in sync.accounted()
    }


def test_wait_and_latest_mix_waits_only_for_the_wait_sensor():
    config = SyncConfig(
        windows={
            "lidar": SensorWindow(0, 50 * MS, "latest", 150 * MS),
            "radar": SensorWindow(0, 38 * MS, "wait"),
        },
        timeout_ns=150 * MS,
    )
    sync = Synchronizer(config)
    sync.push("lidar", 0, "L0")
    assert sync.push("camera", 50 * MS, "C") == []  # radar is still awaited
    (g,) = sync.push("radar", 60 * MS, "R")
    assert g.partners["lidar"].msg == "L0" and g.partners["radar"].msg == "R"
    assert g.partners["radar"].extrapolated_ns is None
