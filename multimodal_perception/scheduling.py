"""Latest wins: the hand-over between subscription callbacks and compute.

A live node must never let a frame wait behind another of the same camera: when compute is
busy, a newer complete frame replaces the one waiting (the replaced one is returned to the
caller to be counted). Depth one per key (a camera of a rig: one camera's newer frame never
replaces another camera's), taken oldest first, so the latency of a frame is at most the
compute time of the frames waiting before it (one per camera) plus its own.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: dict[Hashable, T] = {}  # in the order they came (oldest first)
        self._closed = False
        self._busy = False

    def put(self, item: T, key: Hashable = None) -> T | None:
        """Offer ``item``; returns the item of the same key it replaced (superseded)."""
        with self._cond:
            replaced = self._items.pop(key, None)
            self._items[key] = item
            self._cond.notify_all()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The oldest waiting item (marks the consumer busy until ``done``); None when
        closed or on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout_s)
            item = self._items.pop(next(iter(self._items))) if self._items else None
            self._busy = item is not None
            return item

    def done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """True once nothing waits and the consumer has finished its item."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout_s)

    def close(self) -> list[T]:
        """Stop: wakes the consumer; returns the items still waiting, oldest first."""
        with self._cond:
            self._closed = True
            items, self._items = list(self._items.values()), {}
            self._cond.notify_all()
            return items
