"""Live latency per camera frame, matched by header stamp, split where the time goes.

Four moments per frame: ``received`` (the camera message reached the node), ``synced``
(its partners were decided and the frame was handed to compute), ``started`` (compute
took it) and ``published``. Intervals: ``sync_wait`` (waiting for lidar/radar, inherent
to header-time fusion), ``queue_wait`` (waiting behind another frame: latest-wins keeps
it under one compute time), ``compute`` and ``total``. Wall clock (monotonic) is right
here: this measures the machine, it decides nothing.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

EVENTS = ("received", "synced", "started", "published")
INTERVALS = {
    "sync_wait": ("received", "synced"),
    "queue_wait": ("synced", "started"),
    "compute": ("started", "published"),
    "total": ("received", "published"),
}


class FrameLatency:
    def __init__(self, keep: int = 2000, clock=time.monotonic) -> None:
        self.clock = clock
        self._open: collections.OrderedDict[int, dict[str, float]] = collections.OrderedDict()
        self._done: collections.deque[dict[str, float]] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def mark(self, stamp_ns: int, event: str) -> None:
        now = self.clock()
        with self._lock:
            if event == "received":
                self._open.setdefault(stamp_ns, {})["received"] = now
                while len(self._open) > 1000:  # frames that never completed
                    self._open.popitem(last=False)
                return
            times = self._open.get(stamp_ns)
            if times is None:
                return
            times[event] = now
            if event == "published":
                self._done.append(self._open.pop(stamp_ns))

    def forget(self, stamp_ns: int) -> None:
        """A frame that will not be published (superseded)."""
        with self._lock:
            self._open.pop(stamp_ns, None)

    def summary(self) -> dict[str, float]:
        with self._lock:
            done = [d for d in self._done if all(e in d for e in EVENTS)]
        out: dict[str, float] = {"frames": len(done)}
        for name, (a, b) in INTERVALS.items():
            if done:
                v = np.array([(d[b] - d[a]) * 1e3 for d in done])
                out[f"{name}_ms_p50"] = round(float(np.median(v)), 1)
                out[f"{name}_ms_p95"] = round(float(np.percentile(v, 95)), 1)
        return out
