"""Latest wins: the one-frame hand-over between subscription callbacks and compute.

A live node must never let a frame wait behind another: when compute is busy, a newer
complete frame replaces the one waiting (the replaced one is returned to the caller to be
counted). Depth one, so the latency of a frame is at most the compute time of the frame
before it plus its own.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self._busy = False

    def put(self, item: T) -> T | None:
        """Offer ``item``; returns the item it replaced (superseded), if any."""
        with self._cond:
            replaced, self._item = self._item, item
            self._cond.notify_all()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The waiting item (marks the consumer busy until ``done``); None when closed or
        on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            self._busy = item is not None
            return item

    def done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """True once nothing waits and the consumer has finished its item."""
        with self._cond:
            return self._cond.wait_for(lambda: self._item is None and not self._busy, timeout_s)

    def close(self) -> T | None:
        """Stop: wakes the consumer; returns the item still waiting, if any."""
        with self._cond:
            self._closed = True
            item, self._item = self._item, None
            self._cond.notify_all()
            return item
