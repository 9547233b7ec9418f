"""The synchroniser against a brute-force oracle on generated stamp streams (hypothesis).

The oracle is the documented contract (``fusion/sync.py``), computed offline with the whole
stream in hand: every distinct anchor stamp is one frame (a later same-stamp anchor
supersedes an earlier one); for each partner, the message nearest to ``anchor + offset``
within ``max_skew`` (on a tie the earlier stamp), else the partner is missing; a partner
message chosen by some frame is used, one within reach of some anchor but never chosen is
superseded (so is every same-stamp copy but one: the last anchor, the first partner to
arrive), and the rest had no anchor.

That is what the online collector must produce whenever arrival order stays within
``reorder_tolerance`` (a message arrives before any message stamped more than the
tolerance after it) and ``timeout`` exceeds ``offset + max_skew + reorder_tolerance``.
Streams: sensor rates in ratios from 1:1 to 15:4 (either way), jitter, random drops, burst
gaps, same-stamp duplicates, arrival shuffled within the tolerance. Stamps are whole
milliseconds so that ties and exact window edges occur often. A second property checks
what must hold for any stream at all (tiny buffers, time jumps, arbitrary disorder).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_perception.fusion.sync import Outcome, SensorWindow, SyncConfig, Synchronizer

MS = 1_000_000
# Partner rate / anchor rate: from 4:15 (a 4 Hz radar beside a 15 Hz camera) to 15:4.
RATIOS = [Fraction(a, b) for a, b in ((1, 1), (2, 3), (3, 2), (1, 2), (2, 1), (4, 15), (15, 4))]
PARTNERS = ("lidar", "radar")
Event = tuple[str, int, int]  # (sensor, stamp_ns, payload: the arrival index)
Row = tuple[int, int, dict[str, tuple[int, int] | None]]  # anchor stamp, payload, partners


@dataclass(frozen=True)
class Stream:
    config: SyncConfig
    events: list[Event]  # in arrival order


def _sensor_stamps(rng: np.random.Generator, period_ms: float, seconds: float, p: dict) -> list:
    """Whole-millisecond stamps of one sensor: phase, jitter, drops, a burst gap, duplicates."""
    nominal = np.arange(p["phase_ms"], seconds * 1e3, period_ms)
    stamps = np.round(nominal + rng.uniform(-1, 1, len(nominal)) * p["jitter_ms"])
    keep = rng.uniform(size=len(stamps)) >= p["drop"]
    if p["gap_s"] > 0:  # a burst of losses: the sensor is silent for gap_s
        start = rng.uniform(0, seconds)
        keep &= (nominal < start * 1e3) | (nominal >= (start + p["gap_s"]) * 1e3)
    stamps = stamps[keep]
    dups = stamps[rng.uniform(size=len(stamps)) < p["dup"]]
    return [int(s) * MS for s in np.concatenate([stamps, dups]) if s >= 0]


@st.composite
def streams(draw) -> Stream:
    anchor_period = draw(st.integers(33, 120))  # ms: 8 to 30 Hz
    tolerance = draw(st.sampled_from([0, 0, 5, 20, 60]))  # ms
    windows, stamps = {}, {}
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    seconds = draw(st.floats(1.0, 4.0))

    def sensor_params() -> dict:
        return {
            "phase_ms": draw(st.integers(0, 200)),
            "jitter_ms": draw(st.sampled_from([0, 1, 3, 10])),
            "drop": draw(st.sampled_from([0.0, 0.1, 0.4])),
            "gap_s": draw(st.sampled_from([0.0, 0.0, 0.5])),
            "dup": draw(st.sampled_from([0.0, 0.0, 0.1])),
        }

    stamps["camera"] = _sensor_stamps(rng, anchor_period, seconds, sensor_params())
    for name in PARTNERS[: draw(st.integers(1, 2))]:
        period = anchor_period / float(draw(st.sampled_from(RATIOS)))
        skew = draw(st.integers(0, int(period)))
        # Windows may end before the anchor (offset + skew < 0): a partner stamped earlier.
        offset = draw(st.integers(-skew - 100, 30))
        windows[name] = SensorWindow(offset * MS, skew * MS)
        stamps[name] = _sensor_stamps(rng, period, seconds, sensor_params())
    reach = max(0, *(w.offset_ns + w.max_skew_ns for w in windows.values()))
    timeout = reach + tolerance * MS + draw(st.integers(1, 200)) * MS
    config = SyncConfig(
        anchor="camera",
        windows=windows,
        timeout_ns=timeout,
        max_buffer=100_000,
        reorder_tolerance_ns=tolerance * MS,
    )
    # Arrival = stamp + a delay within the tolerance: a message always arrives before any
    # message stamped more than the tolerance after it.
    tagged = [
        (s + int(rng.integers(0, tolerance * MS + 1)), s, n) for n in stamps for s in stamps[n]
    ]
    tagged.sort(key=lambda e: e[0])  # stable: equal arrival keep generation order
    return Stream(config, [(n, s, i) for i, (_, s, n) in enumerate(tagged)])


def oracle(stream: Stream) -> tuple[list[Row], dict[str, Counter]]:
    """Frames and outcome counts from the contract, with the whole stream in hand."""
    config = stream.config
    # (sensor, stamp) -> payload of the copy that counts: the last anchor to arrive, the
    # first partner (a partner is decided as soon as it is in; a later copy is too late).
    last: dict[tuple[str, int], int] = {}
    received: Counter[str] = Counter()
    for sensor, stamp, payload in stream.events:
        if sensor == config.anchor or (sensor, stamp) not in last:
            last[sensor, stamp] = payload
        received[sensor] += 1
    distinct = {s: sorted(t for n, t in last if n == s) for s in config.sensors}
    counts = {s: Counter() for s in config.sensors}
    for s in config.sensors:
        counts[s][Outcome.SUPERSEDED] = received[s] - len(distinct[s])  # same-stamp copies
    rows: list[Row] = []
    chosen: dict[str, set[int]] = {s: set() for s in config.windows}
    reached: dict[str, set[int]] = {s: set() for s in config.windows}
    for t in distinct[config.anchor]:
        partners: dict[str, tuple[int, int] | None] = {}
        for sensor, w in config.windows.items():
            target = t + w.offset_ns
            cands = [s for s in distinct[sensor] if abs(s - target) <= w.max_skew_ns]
            reached[sensor].update(cands)
            best = min(cands, key=lambda s, target=target: abs(s - target), default=None)
            partners[sensor] = None if best is None else (best, last[sensor, best])
            if best is not None:
                chosen[sensor].add(best)
        rows.append((t, last[config.anchor, t], partners))
    counts[config.anchor][Outcome.USED] = len(distinct[config.anchor])
    for sensor in config.windows:
        counts[sensor][Outcome.USED] = len(chosen[sensor])
        counts[sensor][Outcome.SUPERSEDED] += len(reached[sensor] - chosen[sensor])
        counts[sensor][Outcome.NO_ANCHOR] = len(distinct[sensor]) - len(reached[sensor])
    return rows, {s: +c for s, c in counts.items()}  # unary + drops zero counts


def rows_of(frames: list[Any], config: SyncConfig) -> list[Row]:
    rows = []
    for f in frames:
        partners: dict[str, tuple[int, int] | None] = {}
        for sensor, w in config.windows.items():
            p = f.partners.get(sensor)
            assert (p is None) == (sensor in f.missing)
            if p is not None:
                assert p.skew_ns == p.stamp_ns - (f.stamp_ns + w.offset_ns)
                partners[sensor] = (p.stamp_ns, p.msg[2])
            else:
                partners[sensor] = None
        rows.append((f.stamp_ns, f.anchor[2], partners))
    return rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_online_frames_and_outcomes_equal_the_offline_oracle(stream):
    config = stream.config
    sync = Synchronizer(config)
    frames: list[Any] = []
    for sensor, stamp, payload in stream.events:
        frames += sync.push(sensor, stamp, (sensor, stamp, payload))
        # Nothing waits past the timeout: every anchor that old has been emitted.
        assert all(s + config.timeout_ns > sync.clock for s in _pending_anchor_stamps(sync))
    frames += sync.flush()
    expected_rows, expected_counts = oracle(stream)
    assert rows_of(frames, config) == expected_rows
    assert {s: +c for s, c in sync.counts.items()} == expected_counts
    received = Counter(s for s, _, _ in stream.events)
    assert sync.accounted() == {s: received[s] for s in config.sensors}
    assert sync.resets == 0


@st.composite
def abusive_streams(draw) -> Stream:
    """Any stamps in any order: small buffers, time jumps, arrivals far out of order."""
    n_partners = draw(st.integers(1, 2))
    windows = {
        name: SensorWindow(draw(st.integers(-50, 50)) * MS, draw(st.integers(0, 80)) * MS)
        for name in PARTNERS[:n_partners]
    }
    max_age = draw(st.integers(200, 2000)) * MS
    config = SyncConfig(
        anchor="camera",
        windows=windows,
        timeout_ns=draw(st.integers(0, 199)) * MS,
        max_buffer=draw(st.integers(1, 8)),
        max_age_ns=max_age,
        time_jump_ns=draw(st.integers(100, 1500)) * MS,
        reorder_tolerance_ns=draw(st.integers(0, 100)) * MS,
    )
    sensor = st.sampled_from(config.sensors)
    events = draw(st.lists(st.tuples(sensor, st.integers(0, 3000)), max_size=120))
    return Stream(config, [(n, t * MS, i) for i, (n, t) in enumerate(events)])


@settings(max_examples=200, deadline=None)
@given(abusive_streams())
def test_every_message_has_exactly_one_outcome_for_any_stream(stream):
    config = stream.config
    sync = Synchronizer(config)
    frames: list[Any] = []
    pushed: dict[tuple[str, int], set[int]] = {}
    epoch_frames: list[int] = []
    for sensor, stamp, payload in stream.events:
        resets = sync.resets
        pushed.setdefault((sensor, stamp), set()).add(payload)
        out = sync.push(sensor, stamp, (sensor, stamp, payload))
        if sync.resets != resets:
            epoch_frames = []
        epoch_frames += [f.stamp_ns for f in out]
        frames += out
        # Bounded buffers; no anchor waits past the timeout (unless the buffer forced it out).
        assert all(n <= config.max_buffer for n in sync.pending().values())
        assert all(s + config.timeout_ns > sync.clock for s in _pending_anchor_stamps(sync))
    frames += sync.flush()
    assert epoch_frames == sorted(set(epoch_frames))  # strictly increasing between resets
    received = Counter(s for s, _, _ in stream.events)
    assert sync.accounted() == {s: received[s] for s in config.sensors}
    assert sync.counts[config.anchor][Outcome.USED] == len(frames)
    for f in frames:
        assert f.anchor[2] in pushed[config.anchor, f.stamp_ns]
        for sensor, p in f.partners.items():
            w = config.windows[sensor]
            assert abs(p.stamp_ns - (f.stamp_ns + w.offset_ns)) <= w.max_skew_ns
            assert p.msg[2] in pushed[sensor, p.stamp_ns]


def _pending_anchor_stamps(sync: Synchronizer) -> list[int]:
    # The pending anchors are internal; their stamps are what the timeout contract is about.
    return [e.stamp for e in sync._pending]


def test_late_anchor_within_tolerance_before_a_window_that_ends_early():
    """The case the oracle property found: a partner window ending before its anchor
    (radar stamped 100 ms early) passed while an earlier camera frame, 30 ms late within a
    50 ms tolerance, was still on its way; it used to be dropped as too old."""
    config = SyncConfig(
        windows={"radar": SensorWindow(-100 * MS, 20 * MS)},
        timeout_ns=500 * MS,
        reorder_tolerance_ns=50 * MS,
    )
    sync = Synchronizer(config)
    frames = []
    for sensor, t in (("radar", 900), ("radar", 935), ("camera", 1030), ("radar", 1001)):
        frames += sync.push(sensor, t * MS, t)
    frames += sync.push("camera", 1000 * MS, 1000)  # 30 ms late: within the tolerance
    frames += sync.flush()
    assert [(f.stamp_ns // MS, f.partners["radar"].msg) for f in frames] == [
        (1000, 900),
        (1030, 935),
    ]
    assert sync.counts["camera"][Outcome.TOO_OLD] == 0
