"""How much of the pipeline without models is compiled work, and how much is Python.

Same frames and recorded model outputs as ``bench_pipeline``'s "pipeline without models"
(one core); the step runs once plainly and once with a timer around every compiled fusion
kernel and every numpy / OpenCV primitive the fusion path calls per frame (sort,
argsort, partition, minAreaRect). The timed sum is a floor for the identical-output fast
path: what is left above it is the Python between the calls. The floor, with the plain
step as its baseline, goes to bench/results.json; the timers add a few microseconds per
call, so the floor is read from the timed run and the step from the plain one.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/bench_kernel_floor.py
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

from multimodal_perception.fusion import (
    box_evidence,
    fusion3d,
    ground,
    kernels,
    projection,
    projection_kernels,
)

try:
    from .bench_pipeline import _bag, _core_ms, fast_path
    from .common import record, write_results
except ImportError:
    from bench_pipeline import _bag, _core_ms, fast_path
    from common import record, write_results

FUSION_MODULES = (kernels, projection_kernels, box_evidence, fusion3d, ground, projection)
PRIMITIVES = ((np, "sort"), (np, "argsort"), (np, "partition"), (cv2, "minAreaRect"))


def _timed(spent: Counter[str], name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start

    return call


def main(repeat: int = 3) -> None:
    bag, overrides = _bag()
    mp = pytest.MonkeyPatch()
    cap = fast_path._capture(bag, {**overrides, "segmenter.mode": "letterbox"}, mp)
    _core_ms(cap)  # kernels loaded, caches warm
    frames = len(cap.frames)
    plain, floors, spent_runs = [], [], []
    for _ in range(repeat):  # interleaved: the machine's load hits both alike
        plain.append(_core_ms(cap)[0])
        spent: Counter[str] = Counter()
        with mp.context() as m:
            for module in FUSION_MODULES:
                for name, f in list(vars(module).items()):
                    if isinstance(f, CPUDispatcher):
                        m.setattr(module, name, _timed(spent, name, f))
            for owner, name in PRIMITIVES:
                m.setattr(owner, name, _timed(spent, name, getattr(owner, name)))
            _core_ms(cap)
        floors.append(sum(spent.values()) / frames * 1e3)
        spent_runs.append(spent)
    step_ms, floor_ms = float(np.median(plain)), float(np.median(floors))
    print(f"pipeline without models, {frames} frames, one core")
    print(f"  step                      {step_ms:6.2f} ms/frame")
    print(f"  in kernels and primitives {floor_ms:6.2f} ms/frame  ({floor_ms / step_ms:.2f}x)")
    print(f"  Python between them       {step_ms - floor_ms:6.2f} ms/frame")
    for name, seconds in spent_runs[int(np.argsort(floors)[len(floors) // 2])].most_common():
        print(f"    {name:20} {seconds / frames * 1e3:.3f}")
    # Baseline: the whole step, so the ratio is the share of it spent in compiled code.
    record("kernel_floor_ms_per_frame", floor_ms, "ms", step_ms)
    write_results()


if __name__ == "__main__":
    main()
