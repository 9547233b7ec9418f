"""Captions and questions about the latest frame: the multimodal model's front door.

With ``vlm.backend`` none, questions are answered at once from the structured scene (the
grounded fallback) and there are no captions; with a model, frames are offered to its
worker (rate-limited in header time, never waiting) and questions queue there, unless the
model is resting after a failure: then the grounded fallback answers at once, marked with
its ``fallback_reason`` (the worker's :meth:`~.multimodal_worker.MultimodalWorker.health`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from .multimodal import GroundedFallback
from .multimodal_backends import OpenAIChatVLM, TransformersVLM
from .multimodal_worker import FALLBACK, MultimodalResult, MultimodalWorker

log = logging.getLogger("multimodal_perception.scene_qa")


def make_worker(p: Any) -> MultimodalWorker | None:
    """The caption worker for a configured model (``vlm.*`` parameters); None: off."""
    kind = p["vlm.backend"]
    if kind == "none":
        log.info("vlm.backend is none: no captions; questions use the grounded fallback")
        return None
    if kind == "zero_shot":
        from .models import model_directory
        from .runtime import ModelLoadError
        from .zero_shot import load_zero_shot
        from .zero_shot_qa import ZeroShotVLM

        directory = model_directory(p["models.directory"] or None)
        if directory is None:
            raise ModelLoadError(
                "vlm.backend=zero_shot needs a model directory holding mobilenet_v2_imagenet "
                "(models.directory or MMP_MODEL_DIR)"
            )
        backend: Any = ZeroShotVLM(load_zero_shot([], directory))
    elif kind == "transformers":
        backend = TransformersVLM(p["vlm.model_dir"])
    else:
        if not p["vlm.endpoint"]:
            raise ValueError("vlm.backend=openai needs vlm.endpoint")
        # One attempt per call, each within vlm.timeout_s: the worker retries a failing
        # server with backoff and answers from the scene meanwhile.
        backend = OpenAIChatVLM(
            p["vlm.endpoint"], p["vlm.model"], timeout_s=p["vlm.timeout_s"], retries=0
        )
    return MultimodalWorker(backend, rate_hz=p["vlm.rate_hz"])


def scene_qa(p: Any) -> SceneQA:
    """The front door for the configured model. A model that fails its checks (missing,
    wrong digest: ``ModelLoadError``, one line naming the file) leaves the node running
    with the grounded fallback, and says so in diagnostics."""
    from .runtime import ModelLoadError

    try:
        return SceneQA(make_worker(p))
    except ModelLoadError as exc:
        problem = f"vlm.backend={p['vlm.backend']} is off: {exc}"
        log.error("%s", problem)
        return SceneQA(None, problem)


class SceneQA:
    def __init__(self, worker: MultimodalWorker | None, problem: str | None = None) -> None:
        self.worker = worker
        self.problem = problem  # why a configured model is not running, for diagnostics
        self._last: tuple[int, np.ndarray, dict[str, Any]] | None = None

    def offer(self, stamp_ns: int, image: np.ndarray, scene: dict[str, Any]) -> None:
        self._last = (stamp_ns, image, scene)
        if self.worker is not None:
            self.worker.offer_frame(stamp_ns, image, scene)  # never waits

    def query(self, text: str) -> list[MultimodalResult]:
        """Rank the current tracks and the frame by ``text`` (``query_result``, JSON
        ``mmp.query/1``); needs ``vlm.backend: zero_shot``, else answered at once with
        the reason."""
        from .zero_shot_qa import QUERY_PREFIX, QUERY_SCHEMA, ZeroShotVLM

        if self.worker is None or not isinstance(self.worker.backend, ZeroShotVLM):
            why = self.problem or "text queries need vlm.backend: zero_shot"
            stamp = self._last[0] if self._last is not None else 0
            doc = {"schema": QUERY_SCHEMA, "text": text, "stamp_ns": stamp, "error": why}
            return [MultimodalResult("query_result", stamp, json.dumps(doc), FALLBACK, 0.0)]
        return [_routed(r) for r in self.ask(QUERY_PREFIX + text)]

    def ask(self, question: str) -> list[MultimodalResult]:
        """Answered now (no frame yet, no model, or the model resting after a failure), or
        queued for the model ([])."""
        if self._last is None:
            text = "No frame has been processed yet."
            return [
                MultimodalResult("answer", 0, text, "grounded_fallback", 0.0, question=question)
            ]
        stamp, image, scene = self._last
        if self.worker is not None:
            now = self.worker.ask(question, stamp, image, scene)
            return [now] if now is not None else []
        t0 = time.perf_counter()
        text = GroundedFallback().answer(question, [image], scene)
        latency_ms = (time.perf_counter() - t0) * 1e3
        return [
            MultimodalResult(
                "answer", stamp, text, "grounded_fallback", latency_ms, question=question
            )
        ]

    def poll(self) -> list[MultimodalResult]:
        return [_routed(r) for r in self.worker.results()] if self.worker is not None else []

    def close(self) -> list[MultimodalResult]:
        """Wait for the worker, stop it; its last results."""
        if self.worker is None:
            return []
        self.worker.wait_idle()
        results = [_routed(r) for r in self.worker.results()]
        self.worker.close()
        return results


def result_payload(result: MultimodalResult) -> str:
    """The JSON a result goes out as: a query's ranking as it is, else the result."""
    if result.topic == "query_result":
        return result.text
    return json.dumps(result.to_json(), sort_keys=True)


def _routed(result: MultimodalResult) -> MultimodalResult:
    """An answer to a text query goes out on ``query_result``, its text the JSON."""
    from .zero_shot_qa import QUERY_PREFIX

    if result.topic == "answer" and (result.question or "").startswith(QUERY_PREFIX):
        return replace(result, topic="query_result")
    return result
