"""Scheduling of the multimodal model: its own worker thread, never the sensor path.

Frames are offered at most ``rate_hz`` in header time; the worker keeps only the newest
offered frame (a slow model skips frames, it never queues them up), and questions go
before captions. Results carry the stamp of the frame they describe. A result cache
(perceptual hash + (class, track id) set) answers a near-identical frame without the
model; hit rate and time saved are reported.

Nothing a backend does ends the worker. Every exception from a backend call is caught and
counted (timeouts apart); a failed question is answered by the grounded fallback from the
structured scene and marked (``backend: grounded_fallback`` and ``fallback_reason``); a
failed caption is skipped and counted, never published. After a failure the backend rests
for a backoff (``backoff_s`` doubling to ``backoff_cap_s``, on ``clock``): meanwhile
questions are answered by the fallback at once and captions are skipped; the first call
after the backoff probes it again. Its state (:meth:`MultimodalWorker.health`) is ``ok``,
``degraded`` (failed last time) or ``down`` (``down_after`` failures in a row). Should the
thread die anyway, its question is answered by the fallback and a new thread takes over.

What the worker does with an offered frame is :meth:`MultimodalWorker.frame_work`: a
caption here; a subclass runs another job kind on the same schedule, rate limit, backoff
and health (``open_vocab.OpenVocabWorker`` scores crops against text prompts), calling
the backend through :meth:`MultimodalWorker.call_backend`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .multimodal import GroundedFallback, MultimodalBackend, MultimodalTimeout, ResultCache
from .runtime import lower_thread_priority

log = logging.getLogger("multimodal_perception.multimodal")

FALLBACK = "grounded_fallback"
_Item = tuple[str | None, int, np.ndarray, dict[str, Any]]  # question (None: caption), frame


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and its message, whitespace collapsed."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Questions waiting for a slow model beyond this are answered from the scene at once: a
# flood of questions must not grow memory without bound.
MAX_PENDING_QUESTIONS = 32


@dataclass(frozen=True)
class MultimodalResult:
    topic: str  # "scene_caption" or "answer"
    stamp_ns: int  # of the frame described
    text: str
    backend: str
    latency_ms: float
    cached: bool = False
    question: str | None = None
    fallback_reason: str | None = None  # why the grounded fallback answered, not the model

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
        if self.fallback_reason is not None:
            out["fallback_reason"] = self.fallback_reason
        return out


@dataclass
class WorkerStats:
    offered: int = 0
    skipped_rate: int = 0  # offered sooner than 1 / rate_hz after the last caption
    superseded: int = 0  # replaced by a newer frame before the model was free
    model_calls: int = 0
    errors: int = 0  # model calls that failed, whatever the exception (timeouts included)
    questions: int = 0
    timeouts: int = 0  # failed calls that ran out of time
    fallbacks: int = 0  # questions the grounded fallback answered: the model failed or rested
    captions_skipped: int = 0  # captions not published: the model failed or rested
    restarts: int = 0  # worker threads that died and were replaced


@dataclass
class BackendHealth:
    """Failures in a row and the backoff before the backend is called again."""

    backoff_s: float = 1.0
    backoff_cap_s: float = 30.0
    down_after: int = 3
    consecutive_failures: int = 0
    last_error: str | None = None
    retry_at: float | None = None  # on the worker's clock; None: call it whenever

    @property
    def state(self) -> str:
        if self.consecutive_failures == 0:
            return "ok"
        return "down" if self.consecutive_failures >= self.down_after else "degraded"

    def resting(self, now: float) -> bool:
        return self.retry_at is not None and now < self.retry_at

    def success(self) -> None:
        self.consecutive_failures = 0
        self.retry_at = None

    def failure(self, error: str, now: float) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        doublings = min(self.consecutive_failures - 1, 30)
        self.retry_at = now + min(self.backoff_s * 2.0**doublings, self.backoff_cap_s)


@dataclass
class MultimodalWorker:
    backend: MultimodalBackend
    rate_hz: float = 1.0
    cache: ResultCache = field(default_factory=ResultCache)
    stats: WorkerStats = field(default_factory=WorkerStats)
    backend_health: BackendHealth = field(default_factory=BackendHealth)
    clock: Callable[[], float] = time.monotonic  # the backoff's clock (tests drive it)

    def __post_init__(self) -> None:
        if not 0.0 < self.rate_hz <= 100.0:
            raise ValueError(f"vlm.rate_hz={self.rate_hz}: must lie in (0, 100]")
        self._lock = threading.Condition()
        self._fallback = GroundedFallback()
        self._frame: tuple[int, np.ndarray, dict[str, Any]] | None = None
        self._questions: collections.deque[_Item] = collections.deque()
        self._results: collections.deque[MultimodalResult] = collections.deque()
        self._last_offer_ns: int | None = None
        self._busy = False
        self._stop = False
        self._thread = self._start_thread()

    # -- producers (the pipeline) --------------------------------------------------------
    def due(self, stamp_ns: int) -> bool:
        """Whether a frame at ``stamp_ns`` would pass the rate limit (work for an offer
        can be skipped when not)."""
        last = self._last_offer_ns
        return last is None or not 0 <= stamp_ns - last < int(1e9 / self.rate_hz)

    def offer_frame(self, stamp_ns: int, image: np.ndarray, scene: dict[str, Any]) -> bool:
        """Offer a frame for captioning; False when the rate limit skips it."""
        with self._lock:
            self._ensure_alive()
            self.stats.offered += 1
            period = int(1e9 / self.rate_hz)
            if self._last_offer_ns is not None and 0 <= stamp_ns - self._last_offer_ns < period:
                self.stats.skipped_rate += 1
                return False
            self._last_offer_ns = stamp_ns
            if self._frame is not None:
                self.stats.superseded += 1
            self._frame = (stamp_ns, image, scene)
            self._lock.notify_all()
            return True

    def ask(
        self, question: str, stamp_ns: int, image: np.ndarray, scene: dict[str, Any]
    ) -> MultimodalResult | None:
        """Queue a question for the model (None), or, while the backend rests after a
        failure, the grounded fallback's answer at once."""
        with self._lock:
            self._ensure_alive()
            self.stats.questions += 1
            full = len(self._questions) >= MAX_PENDING_QUESTIONS
            if not full and not self.backend_health.resting(self.clock()):
                self._questions.append((question, stamp_ns, image, scene))
                self._lock.notify_all()
                return None
            self.stats.fallbacks += 1
            reason = (
                f"{MAX_PENDING_QUESTIONS} questions already wait for the model"
                if full
                else self._resting_reason()
            )
        return self._fallback_answer(question, stamp_ns, image, scene, reason)

    def results(self) -> list[MultimodalResult]:
        with self._lock:
            out = list(self._results)
            self._results.clear()
            return out

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until nothing is queued or running; False when ``timeout_s`` ran out."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._busy or self._frame or self._questions:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
            return True

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(timeout=5.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def health(self) -> dict[str, Any]:
        """The backend's state for diagnostics: ok / degraded / down and the counters."""
        with self._lock:
            h, st = self.backend_health, self.stats
            retry_in = max(0.0, h.retry_at - self.clock()) if h.retry_at is not None else 0.0
            return {
                "backend": self.backend.name,
                "state": h.state,
                "consecutive_failures": h.consecutive_failures,
                "last_error": h.last_error,
                "retry_in_s": round(retry_in, 3),
                "calls": st.model_calls,
                "failures": st.errors,
                "timeouts": st.timeouts,
                "fallbacks": st.fallbacks,
                "captions_skipped": st.captions_skipped,
                "restarts": st.restarts,
                "alive": self._thread.is_alive(),
            }

    # -- the worker ----------------------------------------------------------------------
    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="mmp-multimodal", daemon=True)
        thread.start()
        return thread

    def _ensure_alive(self) -> None:
        """(Lock held.) A thread that is gone without handing over is replaced."""
        if not self._stop and not self._thread.is_alive():
            self.stats.restarts += 1
            self._busy = False
            self._thread = self._start_thread()

    def _run(self) -> None:
        lower_thread_priority()  # a model beside the sensor path must not slow it
        item: _Item | None = None
        try:
            while True:
                with self._lock:
                    while not self._stop and self._frame is None and not self._questions:
                        self._lock.wait()
                    if self._stop:
                        return
                    if self._questions:
                        item = self._questions.popleft()
                    else:
                        stamp, image, scene = self._frame
                        item, self._frame = (None, stamp, image, scene), None
                    self._busy = True
                result = self._work(*item)
                item = None
                with self._lock:
                    if result is not None:
                        self._results.append(result)
                    self._busy = False
                    self._lock.notify_all()
        except BaseException as exc:  # even SystemExit from a backend: hand over, go on
            self._died(item, exc)

    def _died(self, item: _Item | None, exc: BaseException) -> None:
        log.error("multimodal worker thread died (%s); starting a new one", one_line(exc))
        reason = f"{self.backend.name} failed: worker thread died: {one_line(exc)}"
        result = None
        if item is not None:
            result = self._failed(*item, reason)
        with self._lock:
            self.stats.errors += 1
            self.backend_health.failure(one_line(exc), self.clock())
            if result is not None:
                self._results.append(result)
            self._busy = False
            if not self._stop:
                self.stats.restarts += 1
                self._thread = self._start_thread()
            self._lock.notify_all()

    def _work(
        self, question: str | None, stamp: int, image: np.ndarray, scene: dict[str, Any]
    ) -> Any:
        if question is None:
            return self.frame_work(stamp, image, scene)
        return self._text_work(question, stamp, image, scene)

    def frame_work(self, stamp: int, image: np.ndarray, scene: dict[str, Any]) -> Any:
        """(Worker thread.) One offered frame's job: its caption, or None (skipped). A
        subclass that runs another job kind overrides this; whatever it returns (not
        None) is handed out by :meth:`results`."""
        return self._text_work(None, stamp, image, scene)

    def call_backend(self, call: Callable[[], Any]) -> tuple[Any, float, str | None]:
        """(Worker thread.) ``call()`` once, unless the backend rests after a failure:
        ``(value, seconds, None)``, or ``(None, 0.0, why not)``. Every exception is caught,
        counted and starts the backoff; a success ends it."""
        with self._lock:
            if self.backend_health.resting(self.clock()):
                return None, 0.0, self._resting_reason()
            self.stats.model_calls += 1
        t0 = time.perf_counter()
        try:
            value = call()
        except Exception as exc:  # whatever a backend raises, the worker goes on
            with self._lock:
                self.stats.errors += 1
                if isinstance(exc, (MultimodalTimeout, TimeoutError)):
                    self.stats.timeouts += 1
                self.backend_health.failure(one_line(exc), self.clock())
                state = self.backend_health.state
            log.warning("%s failed (%s): %s", self.backend.name, state, one_line(exc))
            return None, 0.0, f"{self.backend.name} failed: {one_line(exc)}"
        cost = time.perf_counter() - t0
        with self._lock:
            self.backend_health.success()
        return value, cost, None

    def _text_work(
        self, question: str | None, stamp: int, image: np.ndarray, scene: dict[str, Any]
    ) -> MultimodalResult | None:
        kind = "answer:" + question if question is not None else "caption"
        topic = "answer" if question is not None else "scene_caption"
        cached = self.cache.get(kind, image, scene)
        if cached is not None:
            return MultimodalResult(topic, stamp, cached, self.backend.name, 0.0, True, question)

        def call() -> str:
            text = (
                self.backend.answer(question, [image], scene)
                if question is not None
                else self.backend.describe([image], scene)
            )
            if not isinstance(text, str):
                raise TypeError(f"the backend returned {type(text).__name__}, not text")
            return text

        text, cost, reason = self.call_backend(call)
        if reason is not None:
            return self._failed(question, stamp, image, scene, reason)
        self.cache.put(kind, image, scene, text, cost)
        return MultimodalResult(topic, stamp, text, self.backend.name, cost * 1e3, False, question)

    def _failed(
        self,
        question: str | None,
        stamp: int,
        image: np.ndarray,
        scene: dict[str, Any],
        reason: str,
    ) -> MultimodalResult | None:
        """No model text: a question gets the grounded fallback, a caption is skipped."""
        with self._lock:
            if question is None:
                self.stats.captions_skipped += 1
                return None
            self.stats.fallbacks += 1
        return self._fallback_answer(question, stamp, image, scene, reason)

    def _fallback_answer(
        self, question: str, stamp: int, image: np.ndarray, scene: dict[str, Any], reason: str
    ) -> MultimodalResult:
        t0 = time.perf_counter()
        try:
            text = self._fallback.answer(question, [image], scene)
        except Exception as exc:  # a malformed scene: still an answer, still marked
            text = "I cannot answer that now: neither the model nor the scene could."
            reason += f"; the grounded fallback failed too: {one_line(exc)}"
        latency_ms = (time.perf_counter() - t0) * 1e3
        return MultimodalResult(
            "answer", stamp, text, FALLBACK, latency_ms, question=question, fallback_reason=reason
        )

    def _resting_reason(self) -> str:
        """(Lock held.) Why the backend is not called now."""
        h = self.backend_health
        wait = max(0.0, (h.retry_at or 0.0) - self.clock())
        return (
            f"{self.backend.name} {h.state} after {h.consecutive_failures} failure(s) in a "
            f"row, next try in {wait:.1f} s; last error: {h.last_error}"
        )
