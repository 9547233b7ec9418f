"""Time synchronisation of camera, lidar and radar on header stamps.

An anchor-keyed collector (the pattern Autoware adopted after message_filters'
ApproximateTime proved unfit for camera-lidar fusion): each anchor message (default: the
camera) gathers, for every other sensor, the message nearest to ``anchor + offset``
within ``max_skew``. A frame is emitted as soon as every sensor's partner is decided (its
stream has passed the window, or a message at or after the target is in: later ones can
only be farther), or when the header clock (the newest stamp seen) reaches ``anchor + timeout``;
whatever has not arrived by then is reported missing. Time is header time only, so a
replay is deterministic.

A ``latest`` partner (``SensorWindow.policy``) is chosen as the anchor arrives: the newest
message received whose stamp is at or before the anchor's and at most ``latest_max_age_ns``
older (never one stamped after it); arrival order decides, so replay pushes in log time.

Every input message ends in exactly one :class:`Outcome`, counted per sensor: used in a
frame, superseded (a nearer or same-stamp message won), too old (its frames were already
emitted), no anchor within reach, buffer overflow, or time jump (discarded when time
went backwards by more than ``time_jump`` and the collector reset).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    USED = "used"
    SUPERSEDED = "superseded"
    TOO_OLD = "too_old"
    NO_ANCHOR = "no_anchor"
    OVERFLOW = "buffer_overflow"
    TIME_JUMP = "time_jump"


POLICIES = ("wait", "latest")


@dataclass(frozen=True)
class SensorWindow:
    """Where a partner's stamp is expected relative to the anchor's, and how far off it may
    be (``wait``); or, with ``policy="latest"``, how old the newest message received may be
    at the anchor's stamp (offset and skew are then not used)."""

    offset_ns: int = 0
    max_skew_ns: int = 50_000_000
    policy: str = "wait"
    latest_max_age_ns: int = 150_000_000

    @property
    def latest(self) -> bool:
        return self.policy == "latest"


@dataclass(frozen=True)
class SyncConfig:
    anchor: str = "camera"
    windows: dict[str, SensorWindow] = field(default_factory=dict)  # partners
    timeout_ns: int = 150_000_000
    max_buffer: int = 64  # messages kept per sensor (anchors pending included)
    max_age_ns: int = 2_000_000_000  # buffered messages older than clock - max_age go
    time_jump_ns: int = 1_000_000_000  # a stamp this far behind the clock resets
    reorder_tolerance_ns: int = 0  # how late (in stamp) a message may arrive out of order

    def __post_init__(self) -> None:
        if self.anchor in self.windows:
            raise ValueError(f"sync.anchor {self.anchor!r} cannot also be a partner")
        for name, w in self.windows.items():
            if w.max_skew_ns < 0:
                raise ValueError(f"sync.{name}.max_skew must be >= 0, got {w.max_skew_ns} ns")
            if w.policy not in POLICIES:
                raise ValueError(f"sync.{name}.policy must be one of {POLICIES}, got {w.policy!r}")
            if w.latest_max_age_ns < 0:
                raise ValueError(f"sync.{name}.max_age must be >= 0, got {w.latest_max_age_ns} ns")
        for key in ("timeout_ns", "max_age_ns", "time_jump_ns", "reorder_tolerance_ns"):
            if getattr(self, key) < 0:
                raise ValueError(f"sync.{key} must be >= 0, got {getattr(self, key)}")
        if self.timeout_ns >= self.max_age_ns:
            raise ValueError(
                f"sync.timeout ({self.timeout_ns} ns) must be below sync.max_age "
                f"({self.max_age_ns} ns), or partners age out before their anchor is decided"
            )
        if self.max_buffer < 1:
            raise ValueError(f"sync.max_buffer must be >= 1, got {self.max_buffer}")

    @property
    def sensors(self) -> tuple[str, ...]:
        return (self.anchor, *self.windows)


@dataclass
class _Entry:
    stamp: int
    msg: Any
    key: str  # whose message (the input topic): outcomes are counted per key too
    used: bool = False
    in_reach: bool = False
    # An anchor's partners under the ``latest`` policy, chosen when it arrived.
    chosen: dict[str, _Entry | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Partner:
    stamp_ns: int
    msg: Any
    skew_ns: int  # partner stamp - (anchor stamp + offset)
    # ``latest`` policy: anchor stamp - partner stamp (>= 0), how far it is carried; else None
    extrapolated_ns: int | None = None


@dataclass(frozen=True)
class SyncGroup:
    stamp_ns: int  # the anchor's stamp: the frame's time
    anchor: Any
    partners: dict[str, Partner]
    missing: tuple[str, ...]


class Synchronizer:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self._latest = [s for s, w in config.windows.items() if w.latest]
        self._all_latest = bool(config.windows) and len(self._latest) == len(config.windows)
        self.counts: dict[str, Counter[Outcome]] = {s: Counter() for s in config.sensors}
        # The same outcomes per key (input topic): a sensor fed by two topics (raw and
        # compressed images) is accounted per topic.
        self.key_counts: dict[str, Counter[Outcome]] = defaultdict(Counter)
        self.received: Counter[str] = Counter()
        self.resets = 0
        # Called with (sensor, message, outcome) as each message's outcome is decided (a
        # camera rig combines its synchronisers' outcomes for a shared lidar or radar).
        self.observer: Callable[[str, Any, Outcome], None] | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.clock: int | None = None
        self._pending: list[_Entry] = []  # anchors awaiting their partners, by stamp
        self._buffers: dict[str, list[_Entry]] = {s: [] for s in self.config.windows}
        # Stamps of the partners settled last (bounded): a late same-stamp copy is a copy.
        self._settled: dict[str, deque[int]] = {
            s: deque(maxlen=self.config.max_buffer) for s in self.config.windows
        }
        self._last_emitted: int | None = None
        self._emitted: list[int] = []  # the last emitted anchor stamps, ascending (bounded)

    # -- input -------------------------------------------------------------------------
    def _count(self, sensor: str, entry: _Entry, outcome: Outcome) -> None:
        self.counts[sensor][outcome] += 1
        self.key_counts[entry.key][outcome] += 1
        if self.observer is not None:
            self.observer(sensor, entry.msg, outcome)

    def push(self, sensor: str, stamp_ns: int, msg: Any, key: str | None = None) -> list[SyncGroup]:
        """Add one message; returns the frames that became complete (in stamp order).
        ``key`` (default: the sensor) names the message's source in ``key_counts``."""
        if sensor not in self.counts:
            raise KeyError(f"unknown sensor {sensor!r}; configured: {self.config.sensors}")
        self.received[sensor] += 1
        if self.clock is not None and stamp_ns < self.clock - self.config.time_jump_ns:
            self._time_jump()
        self.clock = stamp_ns if self.clock is None else max(self.clock, stamp_ns)
        entry = _Entry(stamp_ns, msg, key if key is not None else sensor)
        if sensor == self.config.anchor:
            self._add_anchor(entry)
        else:
            self._add_partner(sensor, entry)
        frames = self._emit_ready()
        self._evict()
        return frames

    def advance(self, clock_ns: int) -> list[SyncGroup]:
        """The header clock reached ``clock_ns`` without a message (a live node's timer):
        anchors whose timeout passed are emitted with what arrived."""
        if self.clock is None or clock_ns <= self.clock:
            return []
        self.clock = clock_ns
        frames = self._emit_ready()
        self._evict()
        return frames

    def flush(self) -> list[SyncGroup]:
        """End of stream: emit every pending anchor with what arrived, settle all buffers."""
        frames = []
        while self._pending:
            frames.append(self._emit(self._pending.pop(0)))
        for sensor, buf in self._buffers.items():
            for entry in buf:
                self._settle(sensor, entry)
            buf.clear()
        return frames

    def _time_jump(self) -> None:
        for entry in self._pending:
            self._count(self.config.anchor, entry, Outcome.TIME_JUMP)
        for sensor, buf in self._buffers.items():
            for entry in buf:
                self._count(sensor, entry, Outcome.USED if entry.used else Outcome.TIME_JUMP)
        self.resets += 1
        self._reset_state()

    def _add_anchor(self, entry: _Entry) -> None:
        anchor = self.config.anchor
        if self._last_emitted is not None and entry.stamp <= self._last_emitted:
            self._count(anchor, entry, Outcome.TOO_OLD)
            return
        stamps = [e.stamp for e in self._pending]
        i = bisect.bisect_left(stamps, entry.stamp)
        entry.chosen = {s: self._newest(s, entry.stamp) for s in self._latest}
        if i < len(stamps) and stamps[i] == entry.stamp:
            self._count(anchor, self._pending[i], Outcome.SUPERSEDED)  # the newer one wins
            self._pending[i] = entry
            return
        # More than max_buffer pending anchors: _emit_ready sends the oldest out with what
        # it has (an anchor is never dropped for overflow, nothing waits forever).
        self._pending.insert(i, entry)

    def _newest(self, sensor: str, anchor_stamp: int) -> _Entry | None:
        """``latest``: the newest message received stamped in [anchor - max age, anchor];
        those in that range that lose to it are in reach (they end as superseded)."""
        oldest = anchor_stamp - self.config.windows[sensor].latest_max_age_ns
        best = None
        for cand in self._buffers[sensor]:  # ascending stamps
            if oldest <= cand.stamp <= anchor_stamp:
                cand.in_reach = True
                best = cand
        return best

    def _add_partner(self, sensor: str, entry: _Entry) -> None:
        window = self.config.windows[sensor]
        if entry.stamp in self._settled[sensor]:
            # A copy of a partner already decided (used, or settled when it fell out of
            # reach): the first copy counted, this one is superseded.
            self._count(sensor, entry, Outcome.SUPERSEDED)
            return
        if self._unreachable(entry.stamp, sensor):
            # Every anchor that could reach it has been emitted already.
            self._count(sensor, entry, Outcome.TOO_OLD)
            return
        buf = self._buffers[sensor]
        stamps = [e.stamp for e in buf]
        i = bisect.bisect_left(stamps, entry.stamp)
        if i < len(buf) and buf[i].stamp == entry.stamp:
            # A same-stamp copy of a partner: the first one stays, because a partner may be
            # decided (and used) as soon as it is in.
            self._count(sensor, entry, Outcome.SUPERSEDED)
            return
        if not window.latest:
            # In the window of a frame already emitted (decided before this one came): it
            # was within reach, and lost to the partner chosen then.
            lo = entry.stamp - window.offset_ns - window.max_skew_ns
            j = bisect.bisect_left(self._emitted, lo)
            reach = 2 * window.max_skew_ns
            entry.in_reach = j < len(self._emitted) and self._emitted[j] <= lo + reach
        buf.insert(i, entry)
        while len(buf) > self.config.max_buffer:
            dropped = buf.pop(0)
            self._count(sensor, dropped, Outcome.USED if dropped.used else Outcome.OVERFLOW)

    # -- decisions ---------------------------------------------------------------------
    def _window_passed(self, sensor: str, anchor_stamp: int) -> bool:
        """Is this sensor's partner for the anchor decided? Yes once its stream has passed
        the window's end, or once a message at or after the target (inside the window) is
        in and the stream is ``reorder_tolerance`` past it: any later message can only be
        farther from the target. The second rule saves waiting for the next message when
        a sensor stamps after the camera (typically a lidar sweep's end stamp)."""
        window = self.config.windows[sensor]
        if window.latest:
            return True  # chosen when the anchor arrived
        target = anchor_stamp + window.offset_ns
        end = target + window.max_skew_ns
        buf = self._buffers[sensor]
        if not buf:
            return False
        tolerance = self.config.reorder_tolerance_ns
        if buf[-1].stamp > end + tolerance:
            return True
        i = bisect.bisect_left([e.stamp for e in buf], target)
        return i < len(buf) and buf[i].stamp <= end and buf[-1].stamp >= buf[i].stamp + tolerance

    def _ready(self, entry: _Entry) -> bool:
        assert self.clock is not None
        if self.clock >= entry.stamp + self.config.timeout_ns:
            return True
        # Also wait until no earlier (or same-stamp) anchor can still arrive within the
        # reorder tolerance: a window that ends before the anchor (offset + max_skew < 0)
        # passes before the anchor's own stream has. With every partner ``latest`` there
        # is nothing to wait for: the anchor goes out as it arrives (tolerance 0).
        due = entry.stamp + self.config.reorder_tolerance_ns
        if self.clock < due or (self.clock == due and not self._all_latest):
            return False
        return all(self._window_passed(s, entry.stamp) for s in self.config.windows)

    def _emit_ready(self) -> list[SyncGroup]:
        frames = []
        while self._pending and (
            len(self._pending) > self.config.max_buffer or self._ready(self._pending[0])
        ):
            frames.append(self._emit(self._pending.pop(0)))
        return frames

    def _emit(self, entry: _Entry) -> SyncGroup:
        partners: dict[str, Partner] = {}
        missing = []
        for sensor, window in self.config.windows.items():
            target = entry.stamp + window.offset_ns
            if window.latest:
                chosen = entry.chosen.get(sensor)
                if chosen is None:
                    missing.append(sensor)
                else:
                    chosen.used = True
                    partners[sensor] = Partner(
                        chosen.stamp, chosen.msg, chosen.stamp - target, entry.stamp - chosen.stamp
                    )
                continue
            best: _Entry | None = None
            for cand in self._buffers[sensor]:
                skew = cand.stamp - target
                if abs(skew) <= window.max_skew_ns:
                    cand.in_reach = True
                    # Nearest wins; on a tie the earlier message (stable order).
                    if best is None or abs(skew) < abs(best.stamp - target):
                        best = cand
            if best is None:
                missing.append(sensor)
            else:
                best.used = True
                partners[sensor] = Partner(best.stamp, best.msg, best.stamp - target)
        self._count(self.config.anchor, entry, Outcome.USED)
        self._last_emitted = entry.stamp
        self._emitted.append(entry.stamp)
        del self._emitted[: -self.config.max_buffer]
        return SyncGroup(entry.stamp, entry.msg, partners, tuple(missing))

    def _settle(self, sensor: str, entry: _Entry) -> None:
        if entry.used:
            outcome = Outcome.USED
        elif entry.in_reach:
            outcome = Outcome.SUPERSEDED
        else:
            outcome = Outcome.NO_ANCHOR
        self._count(sensor, entry, outcome)
        self._settled[sensor].append(entry.stamp)

    def _evict(self) -> None:
        """Settle partner messages no future anchor can reach, or that aged out."""
        assert self.clock is not None
        # latest partners chosen by anchors still waiting for a wait partner (none unless
        # some partner is latest: ``chosen`` stays empty)
        held = {id(e) for a in self._pending for e in a.chosen.values() if e is not None}
        for sensor, buf in self._buffers.items():
            latest = self.config.windows[sensor].latest
            keep = []
            for k, entry in enumerate(buf):
                aged = entry.stamp < self.clock - self.config.max_age_ns
                # latest: a newer one at or before the last emitted anchor wins from now on
                beaten = (
                    latest
                    and self._last_emitted is not None
                    and k + 1 < len(buf)
                    and buf[k + 1].stamp <= self._last_emitted
                )
                if id(entry) not in held and (
                    aged or beaten or self._unreachable(entry.stamp, sensor)
                ):
                    self._settle(sensor, entry)
                else:
                    keep.append(entry)
            buf[:] = keep

    def _unreachable(self, stamp: int, sensor: str) -> bool:
        """True when no anchor after the last emitted one can take ``stamp`` (pending and
        future anchors are all later than the last emitted)."""
        if self._last_emitted is None:
            return False
        window = self.config.windows[sensor]
        if window.latest:
            return stamp < self._last_emitted - window.latest_max_age_ns
        return stamp < self._last_emitted + window.offset_ns - window.max_skew_ns

    # -- reporting ---------------------------------------------------------------------
    def accounted(self) -> dict[str, int]:
        """Messages per sensor that have reached an outcome (equals received after flush)."""
        return {s: sum(c.values()) for s, c in self.counts.items()}

    def pending(self) -> dict[str, int]:
        out = {s: len(b) for s, b in self._buffers.items()}
        out[self.config.anchor] = len(self._pending)
        return out

    def pending_by_key(self) -> Counter[str]:
        out: Counter[str] = Counter(e.key for e in self._pending)
        for buf in self._buffers.values():
            out.update(e.key for e in buf)
        return out
