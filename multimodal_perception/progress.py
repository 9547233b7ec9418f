"""Progress a person can watch: bag time done of total, frames/s, ETA and drops so far.

On a terminal a bar redrawn in place (at most 5 times a second); elsewhere (CI logs, a
pipe) a plain line every ``interval_s`` of wall time. Wall time is right here: it is what
the person waits through.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(
        self,
        start_ns: int | None,
        end_ns: int | None,
        stream: TextIO | None = None,
        interval_s: float = 10.0,
        width: int = 28,
    ) -> None:
        self.start_ns, self.end_ns = start_ns, end_ns
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval_s = 0.2 if self.tty else interval_s
        self.width = width
        self.t0 = time.monotonic()
        self._last = float("-inf")

    def line(self, bag_ns: int, frames: int, drops: int) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        fps = frames / elapsed
        if self.start_ns is None or self.end_ns is None or self.end_ns <= self.start_ns:
            return f"{frames} frames, {fps:.1f} frames/s, {drops} dropped"
        span = (self.end_ns - self.start_ns) / 1e9
        done = min(max((bag_ns - self.start_ns) / 1e9, 0.0), span)
        fraction = done / span
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        bar = "#" * int(self.width * fraction)
        eta_text = _clock(eta) if eta == eta else "?"
        return (
            f"[{bar:<{self.width}}] {done:6.1f}/{span:.1f} s of bag  {fps:5.1f} frames/s  "
            f"ETA {eta_text}  {drops} dropped"
        )

    def update(self, bag_ns: int, frames: int, drops: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        text = self.line(bag_ns, frames, drops)
        self.stream.write(f"\r{text}" if self.tty else f"{text}\n")
        self.stream.flush()

    def close(self, bag_ns: int, frames: int, drops: int) -> None:
        text = self.line(bag_ns, frames, drops)
        self.stream.write(f"\r{text}\n" if self.tty else f"{text}\n")
        self.stream.flush()
