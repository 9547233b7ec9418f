"""Synchronisation for a camera rig: every camera is a frame anchor with its own partners.

One :class:`~fusion.sync.Synchronizer` per camera, all with the same windows: a camera
message goes to its camera's synchroniser, a lidar or radar message to every one (each
camera picks the partner nearest its own stamp, so cameras triggered at different times
get the right sweep each). Frames come out in stamp order across cameras within one call.

Accounting stays one outcome per message: a camera message is counted by its camera's
synchroniser; a lidar or radar message, seen by all of them, gets the best of their
outcomes once every one has decided (used by any camera is used; else superseded, no
anchor, too old, overflow, time jump, in that order).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .sync import Outcome, SyncConfig, SyncGroup, Synchronizer

# Best first: the outcome a shared partner message gets from several synchronisers.
_RANK = (
    Outcome.USED,
    Outcome.SUPERSEDED,
    Outcome.NO_ANCHOR,
    Outcome.TOO_OLD,
    Outcome.OVERFLOW,
    Outcome.TIME_JUMP,
)


@dataclass
class _Shared:
    key: str
    msg: Any  # held so that id(msg) names this message until it is decided
    outcomes: list[Outcome] = field(default_factory=list)


class RigSynchronizer:
    def __init__(self, config: SyncConfig, camera_of: dict[str, str]) -> None:
        """``camera_of``: anchor key (input topic) -> camera name."""
        if config.anchor != "camera":
            raise ValueError(
                f"a camera rig needs sync.anchor 'camera' (each camera anchors its frames), "
                f"got {config.anchor!r}"
            )
        self.config = config
        self.camera_of = dict(camera_of)
        self.syncs = {name: Synchronizer(config) for name in dict.fromkeys(camera_of.values())}
        for sync in self.syncs.values():
            sync.observer = self._observe
        self._open: dict[int, _Shared] = {}
        self._partner_counts: dict[str, Counter[Outcome]] = defaultdict(Counter)

    def _observe(self, sensor: str, msg: Any, outcome: Outcome) -> None:
        if sensor == self.config.anchor:
            return  # counted by its own camera's synchroniser
        shared = self._open.get(id(msg))
        if shared is None:
            return
        shared.outcomes.append(outcome)
        if len(shared.outcomes) == len(self.syncs):
            best = min(shared.outcomes, key=_RANK.index)
            self._partner_counts[shared.key][best] += 1
            del self._open[id(msg)]

    # -- the Synchronizer interface the session driver uses ------------------------------
    def push(self, sensor: str, stamp_ns: int, msg: Any, key: str | None = None) -> list[SyncGroup]:
        key = key if key is not None else sensor
        if sensor == self.config.anchor:
            camera = self.camera_of.get(key)
            if camera is None:
                raise KeyError(f"camera topic {key!r} belongs to no rig camera")
            return self.syncs[camera].push(sensor, stamp_ns, msg, key)
        self._open[id(msg)] = _Shared(key, msg)
        groups: list[SyncGroup] = []
        for sync in self.syncs.values():
            groups += sync.push(sensor, stamp_ns, msg, key)
        return sorted(groups, key=lambda g: g.stamp_ns)

    def advance(self, clock_ns: int) -> list[SyncGroup]:
        groups = [g for s in self.syncs.values() for g in s.advance(clock_ns)]
        return sorted(groups, key=lambda g: g.stamp_ns)

    def flush(self) -> list[SyncGroup]:
        groups = [g for s in self.syncs.values() for g in s.flush()]
        return sorted(groups, key=lambda g: g.stamp_ns)

    @property
    def clock(self) -> int | None:
        clocks = [s.clock for s in self.syncs.values() if s.clock is not None]
        return max(clocks) if clocks else None

    @property
    def resets(self) -> int:
        return sum(s.resets for s in self.syncs.values())

    @property
    def key_counts(self) -> dict[str, Counter[Outcome]]:
        out: dict[str, Counter[Outcome]] = defaultdict(Counter)
        for sync in self.syncs.values():
            for key, counts in sync.key_counts.items():
                if key in self.camera_of:
                    out[key].update(counts)
        for key, counts in self._partner_counts.items():
            out[key].update(counts)
        return out

    def pending_by_key(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for sync in self.syncs.values():
            out.update({k: n for k, n in sync.pending_by_key().items() if k in self.camera_of})
        out.update(shared.key for shared in self._open.values())
        return out
