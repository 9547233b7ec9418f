"""Timing helpers for the benchmarks: median of repeats, printed as ratios to a baseline
measured in the same run (absolute times vary between machines; ratios travel)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def median_seconds_interleaved(
    fns: list[Callable[[], object]], repeat: int = 30, warmup: int = 3
) -> list[float]:
    """Median seconds of each of ``fns``, called in turn round after round: drifts in the
    machine's load or clock hit all of them alike (timed one after the other, a ratio near
    1 is mostly the drift between the two runs)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [float(sorted(s)[len(s) // 2]) for s in samples]


def goal_met(target: str, ms: float, ratio: float | None) -> bool | None:
    """Whether every clause of a target such as ``"<= 1 ms, <= 1.03x"`` holds; None when
    the target names no such clause (a goal in words only)."""
    verdicts = []
    for clause in target.split(","):
        words = clause.replace("<=", " ").split()
        try:
            if len(words) == 2 and words[1] == "ms":
                verdicts.append(ms <= float(words[0]))
            elif len(words) == 1 and words[0].endswith("x") and ratio is not None:
                verdicts.append(ratio <= float(words[0][:-1]))
        except ValueError:
            continue
    return all(verdicts) if verdicts else None


def report(name: str, seconds: float, baseline: float | None = None, target: str = "") -> str:
    """Print one timing (and its ratio to the same-run baseline) and record it as a row of
    ``bench/results.json``, its goal judged where the target says ms or x."""
    line = f"{name:58} {seconds * 1e3:9.3f} ms"
    ratio = seconds / baseline if baseline else None
    if ratio is not None:
        line += f"   ratio {ratio:5.2f}x"
    if target:
        line += f"   (target {target})"
    print(line)
    base_ms = baseline * 1e3 if baseline is not None else None
    record(
        name.strip(), seconds * 1e3, "ms", base_ms, target, goal_met(target, seconds * 1e3, ratio)
    )
    return line


RESULTS_JSON = Path(__file__).resolve().parent / "results.json"
_MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"
_RESULTS: list[dict[str, Any]] = []


def record(
    metric: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    goal: str = "",
    met: bool | None = None,
) -> dict[str, Any]:
    """Keep one measured value for ``bench/results.json``: its same-run baseline, the
    ratio to it, the goal in words and whether it is met (None: no goal)."""
    row = {
        "metric": metric,
        "value": round(float(value), 4),
        "unit": unit,
        "baseline": None if baseline is None else round(float(baseline), 4),
        "ratio": None if not baseline else round(float(value) / float(baseline), 4),
        "goal": goal,
        "met": met,
        "machine": _MACHINE,
        "date": time.strftime("%Y-%m-%d"),
    }
    _RESULTS.append(row)
    return row


def write_results(path: Path = RESULTS_JSON) -> Path:
    """Merge this run's rows into ``path`` (by metric name; other benches' rows stay)."""
    rows: dict[str, dict[str, Any]] = {}
    if path.exists():
        try:
            rows = {r["metric"]: r for r in json.loads(path.read_text())["results"]}
        except (ValueError, KeyError, TypeError):
            rows = {}
    rows.update({r["metric"]: r for r in _RESULTS})
    payload = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "results": list(rows.values()),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
