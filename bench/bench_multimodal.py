"""A slow multimodal backend (2 s a call) beside the pipeline: per-frame latency as a ratio
to the same run without a model, and the model's call rate. Two backends: one that only
sleeps (the worker thread's scheduling cost alone) and one that computes for 2 s of CPU
time a call (numpy matmuls that release the GIL, as torch does), which competes with the
pipeline for the cores, as a real model does. The shipped bag is fed in real time (header
time paced)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from multimodal_perception.config import load_parameters
from multimodal_perception.perception.multimodal_worker import MultimodalWorker
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore

try:  # run as part of the bench package or as a script from bench/
    from .common import record
except ImportError:
    from common import record

REPO = Path(__file__).resolve().parents[1]
BAG = REPO / "bags" / "urban_crossing_5s"
RATE_HZ = 0.4  # below the slow backend's 0.5 calls/s, so the rate is what limits it


class SlowBackend:
    name = "sleeps_2s"

    def __init__(self) -> None:
        self.calls: list[float] = []

    def work(self) -> None:
        time.sleep(2.0)

    def describe(self, images, scene):
        self.calls.append(time.monotonic())
        self.work()
        return "a caption"

    def answer(self, question, images, scene):
        return self.describe(images, scene)


class BusyBackend(SlowBackend):
    name = "computes_2s"

    def work(self) -> None:
        a = np.random.default_rng(0).standard_normal((256, 256))
        start = time.thread_time()
        while time.thread_time() - start < 2.0:
            a = np.tanh(a @ a.T / 256.0)


def run(records: list, backend: SlowBackend | None) -> tuple[list[float], float]:
    pipeline = Pipeline(load_parameters(), RosbagsFactory(get_project_typestore()))
    if backend is not None:
        pipeline.qa.worker = MultimodalWorker(backend, rate_hz=RATE_HZ)
    latencies = []
    t_start, stamp0 = time.monotonic(), records[0].log_time_ns
    for rec in records:
        due = t_start + (rec.log_time_ns - stamp0) / 1e9  # real-time playback
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        t0 = time.perf_counter()
        outputs = pipeline.process(rec.topic, rec.msg)
        if any(o.topic == "scene" for o in outputs):
            latencies.append((time.perf_counter() - t0) * 1e3)
    elapsed = time.monotonic() - t_start
    pipeline.close()
    return latencies, elapsed


def main() -> None:
    records = [r for r in iter_bag(BAG) if not r.topic.startswith("/ground_truth")]
    base, _ = run(records, None)
    b = float(np.median(base))
    print(f"real-time replay of {BAG.name}, multimodal backend taking 2 s a call")
    print(f"{'frame latency, no multimodal model (median)':58} {b:9.3f} ms")
    for backend, target in ((SlowBackend(), "   (target <= 1.10x)"), (BusyBackend(), "")):
        latencies, elapsed = run(records, backend)
        s = float(np.median(latencies))
        label = f"frame latency, model {backend.name} (median)"
        print(f"{label:58} {s:9.3f} ms   ratio {s / b:5.2f}x{target}")
        goal = "<= 1.10x" if target else ""
        record(label, s, "ms", b, goal, s / b <= 1.10 if target else None)
        calls = len(backend.calls)
        print(
            f"  model calls {calls} in {elapsed:.1f} s: {calls / elapsed:.2f} Hz "
            f"(configured {RATE_HZ} Hz in header time)"
        )


if __name__ == "__main__":
    main()
