"""Timing helpers for the benchmarks: median of repeats, printed as ratios to a baseline
measured in the same run (absolute times vary between machines; ratios travel)."""

from __future__ import annotations

import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeat: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2]


def report(name: str, seconds: float, baseline: float | None = None, target: str = "") -> str:
    line = f"{name:58} {seconds * 1e3:9.3f} ms"
    if baseline is not None:
        line += f"   ratio {seconds / baseline:5.2f}x"
    if target:
        line += f"   (target {target})"
    print(line)
    return line
