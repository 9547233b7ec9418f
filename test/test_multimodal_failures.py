"""The multimodal worker against misbehaving model servers (real HTTP servers on
127.0.0.1): garbage, cut replies, trickles, errors, exceptions, floods of questions. It
never dies, answers from the scene (marked) and recovers with backoff."""

from __future__ import annotations

import io
import json
import re
import socketserver
import threading

import numpy as np
import pytest
from multimodal_common import IMAGE, SCENE, SHIPPED

from conftest import REPO
from multimodal_perception.config import load_parameters
from multimodal_perception.perception.multimodal import (
    GroundedFallback,
    MultimodalError,
    MultimodalTimeout,
)
from multimodal_perception.perception.multimodal_backends import OpenAIChatVLM
from multimodal_perception.perception.multimodal_worker import (
    BackendHealth,
    MultimodalResult,
    MultimodalWorker,
)
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

MODEL_TEXT = "A car #3 is ahead."
OK_REPLY = json.dumps(
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": MODEL_TEXT}}]}
).encode()


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a trickle still sending never holds up the test's end


class MisbehavingServer:
    """A chat-completions server on 127.0.0.1, written on raw sockets so that it can break
    HTTP. Each request is answered in the next mode of ``script``, then in ``default``:
    ok; garbage (no HTTP status line: BadStatusLine); cut (closes mid-body: IncompleteRead);
    trickle (headers, then one byte every 0.2 s for as long as the client listens);
    trickle_headers (the status line, then one header byte every 0.2 s); http500; huge
    (a 64 MiB reply)."""

    def __init__(self, script: list[str], default: str = "ok") -> None:
        self.script, self.default = list(script), default
        self.served: list[str] = []
        self.client_left = threading.Event()  # a trickle ended because the client went
        self.stop = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                self.rfile.read(length)
                with lock:
                    mode = outer.script.pop(0) if outer.script else outer.default
                    outer.served.append(mode)
                try:
                    outer.respond(mode, self.wfile)
                except OSError:
                    if mode.startswith("trickle"):
                        outer.client_left.set()

        self.server = _ThreadingServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def respond(self, mode: str, w: io.BufferedIOBase) -> None:
        def head(status: str, length: int) -> bytes:
            return (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
            ).encode()

        if mode == "ok":
            w.write(head("200 OK", len(OK_REPLY)) + OK_REPLY)
        elif mode == "garbage":
            w.write(b"SPEAKING NO HTTP AT ALL\r\n\r\n\x00\xff")
        elif mode == "cut":
            w.write(head("200 OK", len(OK_REPLY)) + OK_REPLY[:20])
        elif mode == "http500":
            body = b"Traceback (most recent call last):\n  CUDA error: out of memory\n"
            w.write(head("500 Internal Server Error", len(body)) + body)
        elif mode == "huge":
            w.write(head("200 OK", 64 << 20))
            for _ in range(64 << 4):
                w.write(b" " * (64 << 10))
        elif mode in ("trickle", "trickle_headers"):
            w.write(head("200 OK", 1 << 20) if mode == "trickle" else b"HTTP/1.1 200 OK\r\n")
            while not self.stop.wait(0.2):
                w.write(b" " if mode == "trickle" else b"X")
        else:
            raise ValueError(mode)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class FakeClock:
    """The worker's backoff clock, moved by the test: backoff without waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ask_and_wait(worker: MultimodalWorker, question: str) -> MultimodalResult:
    """The answer to a question: at once (the model resting) or from the worker."""
    now = worker.ask(question, 1, IMAGE, SCENE)
    if now is not None:
        return now
    assert worker.wait_idle(30.0), "the worker never finished the question"
    (result,) = worker.results()
    return result


def call_in_thread(fn, timeout_s: float = 30.0) -> BaseException | None:
    """What ``fn()`` raised (None: it returned), failing the test if it never ends."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            raised.append(None)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert raised, f"the call never ended ({timeout_s} s)"
    return raised[0]


@pytest.mark.parametrize(
    ("mode", "error", "detail"),
    [
        ("garbage", MultimodalError, "BadStatusLine"),
        ("cut", MultimodalError, "IncompleteRead"),
        ("http500", MultimodalError, "HTTP 500"),
        ("trickle", MultimodalTimeout, "timed out after 0.5 s"),
        ("trickle_headers", MultimodalTimeout, "timed out after 0.5 s"),
        ("huge", MultimodalError, "reply longer than 1048576 bytes"),
    ],
)
def test_openai_backend_turns_any_server_misbehaviour_into_an_error_within_its_deadline(
    mode, error, detail
):
    server = MisbehavingServer([], default=mode)
    try:
        vlm = OpenAIChatVLM(server.url, "m", timeout_s=0.5, retries=1)
        exc = call_in_thread(lambda: vlm.answer("What is ahead?", [IMAGE], SCENE))
        assert type(exc) is error and detail in str(exc)
        if mode == "huge":  # read no further than 1 MiB, and not worth a second attempt
            assert server.served == [mode]
        else:  # a failed attempt is tried once more
            assert server.served == [mode, mode] and "no reply after 2 attempts" in str(exc)
        if mode.startswith("trickle"):
            # The server was still sending when the client gave up: only the deadline
            # ended each attempt.
            assert server.client_left.wait(10.0)
    finally:
        server.close()


@pytest.mark.parametrize("mode", ["garbage", "cut", "trickle", "http500"])
def test_a_misbehaving_server_gets_marked_fallback_answers_and_the_worker_lives_on(mode):
    server = MisbehavingServer([mode])  # the first request misbehaves, then all is well
    clock = FakeClock()
    worker = MultimodalWorker(OpenAIChatVLM(server.url, "m", timeout_s=1.0, retries=0), clock=clock)
    try:
        first = ask_and_wait(worker, "How many cars?")
        assert (first.backend, first.text) == ("grounded_fallback", "1 car in view.")
        reason = first.to_json()["fallback_reason"]
        assert reason.startswith("openai_compatible failed: ") and "\n" not in reason
        assert worker.alive
        health = worker.health()
        assert (health["state"], health["consecutive_failures"]) == ("degraded", 1)
        assert (health["calls"], health["failures"], health["fallbacks"]) == (1, 1, 1)
        assert health["timeouts"] == (1 if mode == "trickle" else 0)
        assert health["last_error"] and health["retry_in_s"] == 1.0
        assert health["restarts"] == 0  # caught as a failed call, not as a dead thread
        # While the backend rests, a question is answered at once, the server not called.
        resting = worker.ask("What is closest?", 2, IMAGE, SCENE)
        assert resting is not None and resting.backend == "grounded_fallback"
        assert resting.text.startswith("The closest is person #7")
        assert resting.fallback_reason.startswith("openai_compatible degraded")
        # ... and a caption is skipped, counted, never published.
        assert worker.offer_frame(3, IMAGE, SCENE) and worker.wait_idle(30.0)
        assert worker.results() == [] and worker.health()["captions_skipped"] == 1
        assert server.served == [mode]
        # After the backoff the model is tried again; the server has recovered.
        clock.now += 1.0
        answer = ask_and_wait(worker, "What is ahead?")
        assert (answer.backend, answer.text) == ("openai_compatible", MODEL_TEXT)
        assert "fallback_reason" not in answer.to_json()
        health = worker.health()
        assert (health["state"], health["consecutive_failures"], health["calls"]) == ("ok", 0, 2)
        assert worker.alive and server.served == [mode, "ok"]
    finally:
        worker.close()
        server.close()


def test_a_failing_server_is_retried_with_capped_exponential_backoff_and_recovers():
    server = MisbehavingServer(["http500", "garbage", "cut", "http500"])
    clock = FakeClock()
    worker = MultimodalWorker(
        OpenAIChatVLM(server.url, "m", timeout_s=5.0, retries=0),
        clock=clock,
        backend_health=BackendHealth(backoff_s=1.0, backoff_cap_s=4.0, down_after=3),
    )
    try:
        states, waits = [], []
        for k in range(4):
            probe = ask_and_wait(worker, f"How many cars? ({k})")
            assert probe.backend == "grounded_fallback" and probe.text == "1 car in view."
            health = worker.health()
            states.append(health["state"])
            waits.append(health["retry_in_s"])
            clock.now += health["retry_in_s"] / 2  # half-way through the backoff: resting
            assert worker.ask("How many cars?", 1, IMAGE, SCENE).backend == "grounded_fallback"
            clock.now += health["retry_in_s"]
        assert states == ["degraded", "degraded", "down", "down"]
        assert waits == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at 4 s
        assert len(server.served) == 4  # resting answers never called the server
        answer = ask_and_wait(worker, "What is ahead?")
        assert (answer.backend, answer.text) == ("openai_compatible", MODEL_TEXT)
        health = worker.health()
        assert health["state"] == "ok" and health["alive"]
        assert (health["calls"], health["failures"], health["fallbacks"]) == (5, 4, 8)
        assert worker.stats.questions == 9
    finally:
        worker.close()
        server.close()


class UnrulyBackend:
    """A backend that raises what real ones raise and worse: a RuntimeError (a CUDA error,
    say), then SystemExit (a library calling sys.exit), then answers."""

    name = "unruly"

    def __init__(self) -> None:
        self.calls = 0

    def answer(self, question, images, scene):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.calls == 2:
            raise SystemExit("the library gave up")
        return "model answer"

    def describe(self, images, scene):
        return self.answer("", images, scene)


def test_any_backend_exception_is_caught_and_a_dead_worker_thread_is_replaced():
    clock = FakeClock()
    worker = MultimodalWorker(UnrulyBackend(), clock=clock)
    try:
        first = ask_and_wait(worker, "How many cars?")
        assert first.backend == "grounded_fallback"
        assert first.fallback_reason == (
            "unruly failed: RuntimeError: CUDA error: an illegal memory access was encountered"
        )
        clock.now += 1.0
        thread = worker._thread
        second = ask_and_wait(worker, "How many people?")  # SystemExit ends the thread
        assert (second.backend, second.text) == ("grounded_fallback", "1 person in view.")
        assert "worker thread died: SystemExit: the library gave up" in second.fallback_reason
        thread.join(10.0)
        assert not thread.is_alive()  # the thread that ran the call is gone
        assert worker.alive and worker.stats.restarts == 1
        clock.now += 2.0
        third = ask_and_wait(worker, "What is ahead?")
        assert (third.backend, third.text) == ("unruly", "model answer")
        assert worker.health()["failures"] == 2 and worker.health()["state"] == "ok"
    finally:
        worker.close()


def test_pipeline_with_a_broken_model_server_publishes_no_error_text(tmp_path):
    server = MisbehavingServer([], default="garbage")
    params = load_parameters(REPO / "config" / "perception.yaml").with_overrides(
        {"vlm.backend": "openai", "vlm.endpoint": server.url, "vlm.timeout_s": 2.0}
    )
    try:
        pipeline = Pipeline(params, RosbagsFactory(get_project_typestore()))
        outputs = []
        for rec in iter_bag(SHIPPED):
            outputs += pipeline.process(rec.topic, rec.msg)
        outputs += pipeline.finish() + pipeline.ask("How many cars?") + pipeline.close()
    finally:
        server.close()
    captions = [o for o in outputs if o.topic == "scene_caption"]
    answers = [json.loads(o.msg.data) for o in outputs if o.topic == "answer"]
    assert captions == [] and server.served  # the model was called and never published
    (answer,) = answers
    assert answer["backend"] == "grounded_fallback" and re.match(
        r"\d+ cars? in view", answer["text"]
    )
    assert answer["fallback_reason"].startswith("openai_compatible ")
    health = pipeline.multimodal.health()
    assert health["state"] in ("degraded", "down") and health["failures"] >= 1
    assert health["captions_skipped"] >= 1 and health["fallbacks"] == 1


def test_a_flood_of_questions_is_answered_from_the_scene_not_queued_without_bound():
    from multimodal_perception.perception.multimodal_worker import MAX_PENDING_QUESTIONS

    release = threading.Event()

    class Busy(GroundedFallback):
        name = "busy"

        def answer(self, question, images, scene):
            release.wait(30)
            return "from the model"

    worker = MultimodalWorker(Busy())
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        immediate = [worker.ask(f"q{i}", 1, image, {"objects": []}) for i in range(100)]
        answered_now = [r for r in immediate if r is not None]
        # one question may be in the model; at most MAX_PENDING_QUESTIONS wait
        assert len(answered_now) >= 100 - MAX_PENDING_QUESTIONS - 1
        assert all(r.backend == "grounded_fallback" and r.fallback_reason for r in answered_now)
    finally:
        release.set()
        worker.close()
