"""Scheduling of the multimodal model: its own worker thread, never the sensor path.

Frames are offered at most ``rate_hz`` in header time; the worker keeps only the newest
offered frame (a slow model skips frames, it never queues them up), and questions go
before captions. Results carry the stamp of the frame they describe. A result cache
(perceptual hash + (class, track id) set) answers a near-identical frame without the
model; hit rate and time saved are reported.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .multimodal import MultimodalBackend, MultimodalError, ResultCache


@dataclass(frozen=True)
class MultimodalResult:
    topic: str  # "scene_caption" or "answer"
    stamp_ns: int  # of the frame described
    text: str
    backend: str
    latency_ms: float
    cached: bool = False
    question: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "text": self.text,
            "stamp_ns": self.stamp_ns,
            "backend": self.backend,
            "latency_ms": round(self.latency_ms, 3),
            "cached": self.cached,
        }
        if self.question is not None:
            out["question"] = self.question
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class WorkerStats:
    offered: int = 0
    skipped_rate: int = 0  # offered sooner than 1 / rate_hz after the last caption
    superseded: int = 0  # replaced by a newer frame before the model was free
    model_calls: int = 0
    errors: int = 0
    questions: int = 0


@dataclass
class MultimodalWorker:
    backend: MultimodalBackend
    rate_hz: float = 1.0
    cache: ResultCache = field(default_factory=ResultCache)
    stats: WorkerStats = field(default_factory=WorkerStats)

    def __post_init__(self) -> None:
        if not 0.0 < self.rate_hz <= 100.0:
            raise ValueError(f"vlm.rate_hz={self.rate_hz}: must lie in (0, 100]")
        self._lock = threading.Condition()
        self._frame: tuple[int, np.ndarray, dict[str, Any]] | None = None
        self._questions: collections.deque[tuple[str, int, np.ndarray, dict]] = collections.deque()
        self._results: collections.deque[MultimodalResult] = collections.deque()
        self._last_offer_ns: int | None = None
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="mmp-multimodal", daemon=True)
        self._thread.start()

    # -- producers (the pipeline) --------------------------------------------------------
    def offer_frame(self, stamp_ns: int, image: np.ndarray, scene: dict[str, Any]) -> bool:
        """Offer a frame for captioning; False when the rate limit skips it."""
        with self._lock:
            self.stats.offered += 1
            period = int(1e9 / self.rate_hz)
            if self._last_offer_ns is not None and 0 <= stamp_ns - self._last_offer_ns < period:
                self.stats.skipped_rate += 1
                return False
            self._last_offer_ns = stamp_ns
            if self._frame is not None:
                self.stats.superseded += 1
            self._frame = (stamp_ns, image, scene)
            self._lock.notify()
            return True

    def ask(self, question: str, stamp_ns: int, image: np.ndarray, scene: dict[str, Any]) -> None:
        with self._lock:
            self.stats.questions += 1
            self._questions.append((question, stamp_ns, image, scene))
            self._lock.notify()

    def results(self) -> list[MultimodalResult]:
        with self._lock:
            out = list(self._results)
            self._results.clear()
            return out

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while (self._busy or self._frame or self._questions) and time.monotonic() < deadline:
                self._lock.wait(0.05)

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(timeout=5.0)

    # -- the worker ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stop and self._frame is None and not self._questions:
                    self._lock.wait()
                if self._stop:
                    return
                if self._questions:
                    question, stamp, image, scene = self._questions.popleft()
                else:
                    question = None
                    stamp, image, scene = self._frame
                    self._frame = None
                self._busy = True
            result = self._work(question, stamp, image, scene)
            with self._lock:
                self._results.append(result)
                self._busy = False
                self._lock.notify_all()

    def _work(
        self, question: str | None, stamp: int, image: np.ndarray, scene: dict[str, Any]
    ) -> MultimodalResult:
        kind = "answer:" + question if question is not None else "caption"
        topic = "answer" if question is not None else "scene_caption"
        cached = self.cache.get(kind, image, scene)
        if cached is not None:
            return MultimodalResult(topic, stamp, cached, self.backend.name, 0.0, True, question)
        t0 = time.perf_counter()
        try:
            self.stats.model_calls += 1
            text = (
                self.backend.answer(question, [image], scene)
                if question is not None
                else self.backend.describe([image], scene)
            )
        except MultimodalError as exc:
            self.stats.errors += 1
            return MultimodalResult(
                topic,
                stamp,
                "",
                self.backend.name,
                (time.perf_counter() - t0) * 1e3,
                False,
                question,
                str(exc),
            )
        cost = time.perf_counter() - t0
        self.cache.put(kind, image, scene, text, cost)
        return MultimodalResult(topic, stamp, text, self.backend.name, cost * 1e3, False, question)
