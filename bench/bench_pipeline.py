"""Before/after, each against a baseline from this run, on the KITTI raw bag when ../shared
is present (real models: YOLOX-nano + Cityscapes DeepLab), else on the shipped synthetic
bag with the project-trained models:

- the pipeline without model inference, ms per frame on one core: the frames and the
  models' outputs are captured once, then ``FrameCore.step`` runs with the recorded
  outputs, the reference fusion (``test/fast_path_reference.py``: the code the fast
  path replaced) against the fast path, interleaved;
- replay frames per second with the real models, single-pass and tiled, median of
  ``rounds`` interleaved runs each: baseline = the replay before the lookahead (the
  segmenter on the worker while this thread detects, then fusion; the segmenter padded
  into its 513x513 square; numpy's BLAS with a thread per core, as numpy starts; output
  chunks compressed with zstd 3 on this thread); after = the replay as it is
  (``lookahead.Lookahead``: both models of frame N+1 on the worker while frame N is
  fused; the segmenter re-shaped to the camera's aspect; BLAS on one thread; zstd 1 on
  the bag writer's thread).

Rows go to bench/results.json (``common.record``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from multimodal_perception.core import FrameCore
from multimodal_perception.lookahead import Lookahead
from multimodal_perception.replay import replay
from multimodal_perception.ros_pkg.bag_io import BagWriter

try:
    from .common import record, write_results
except ImportError:
    from common import record, write_results

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMP_SHARED_DIR", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "test"))
import test_fast_path as fast_path  # noqa: E402  (the reference implementations)

_LOOKAHEAD_INIT = Lookahead.__init__

# The 3 ms goal was dropped (below the compiled floor with identical outputs, RESULTS.md
# 2026-12-03): the goal is a ratio to the numpy reference measured in the same run.
GOAL_RATIO = 0.15
GOAL_FPS = 10.0


def _bag() -> tuple[Path, dict[str, Any]]:
    models = SHARED / "models"
    if (SHARED / "data" / "kitti_raw_2011_09_26").is_dir() and (models / "yolox_nano_416").is_dir():
        from multimodal_perception.bagbuild import build_real_bag

        bag = REPO / ".cache" / "bench" / "kitti_raw"
        if not bag.exists():
            build_real_bag("kitti_raw", SHARED / "data", bag)
        return bag, {"models.directory": str(models)}
    return REPO / "bags" / "urban_crossing_5s", {}


def _core_ms(cap: fast_path.Captured) -> tuple[float, dict[str, float]]:
    """Median ms per frame of ``FrameCore.step`` with recorded model outputs, and the
    median per stage."""
    stack = cap.models
    recorded = type(stack)(
        fast_path._Recorded(stack.detector, [f[1] for f in cap.frames], "__call__"),
        fast_path._Recorded(stack.segmenter, [f[2] for f in cap.frames], "segment")
        if stack.segmenter
        else None,
        None,
        stack.embedded_default,
    )
    core = FrameCore(cap.params, recorded)
    times, stages = [], {}
    for frame, _, _ in cap.frames:
        start = time.perf_counter()
        result = core.step(frame)
        times.append(time.perf_counter() - start)
        for k, v in result.timings_ms.items():
            stages.setdefault(k, []).append(v)
    return float(np.median(times)) * 1e3, {k: float(np.median(v)) for k, v in stages.items()}


def without_models(bag: Path, overrides: dict[str, Any], repeat: int = 3) -> None:
    mp = pytest.MonkeyPatch()
    cap = fast_path._capture(bag, {**overrides, "segmenter.mode": "letterbox"}, mp)
    fast, ref = [], []
    for _ in range(repeat):  # interleaved: the machine's load hits both alike
        with mp.context() as m:
            fast_path.use_reference(m)
            ref.append(_core_ms(cap))
        fast.append(_core_ms(cap))
    ref_ms = float(np.median([r[0] for r in ref]))
    fast_ms = float(np.median([f[0] for f in fast]))
    n_points = int(np.median([len(f.lidar.xyz) for f, _, _ in cap.frames if f.lidar]))
    print(f"pipeline without models, {len(cap.frames)} frames, ~{n_points} lidar points, one core")
    for name, (ms, stages) in (("reference", ref[-1]), ("fast path", fast[-1])):
        parts = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(stages.items()) if k not in ("detector", "segmenter")
        )
        print(f"  {name:10} {ms:7.2f} ms/frame  ({parts})")
    met = fast_ms <= GOAL_RATIO * ref_ms
    print(
        f"  fast path / reference = {fast_ms / ref_ms:.2f}x   (goal <= {GOAL_RATIO:g}x: "
        f"{'met' if met else 'not met'})"
    )
    goal = f"<= {GOAL_RATIO:g}x reference"
    record("pipeline_without_models_ms_per_frame", fast_ms, "ms", ref_ms, goal, met)


class _ForegroundWriter(BagWriter):
    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **{**kwargs, "background": False})


def _use_replay_before(m: pytest.MonkeyPatch) -> None:
    """The replay as it was before the lookahead (see the module docstring)."""
    from threadpoolctl import threadpool_limits

    from multimodal_perception import replay as replay_module
    from multimodal_perception.perception import reshape, stack
    from multimodal_perception.ros_pkg import bag_io

    m.setattr(replay_module.Lookahead, "__init__", _no_lookahead)
    m.setattr(replay_module, "BagWriter", _ForegroundWriter)
    m.setattr(bag_io, "ZSTD_LEVEL", 3)
    m.setattr(reshape.FittedSegmenterInput, "__call__", lambda self, w, h: None)
    m.setattr(stack, "limit_blas_threads", lambda: None)
    threadpool_limits(limits=os.cpu_count() or 1, user_api="blas")
    m.setattr(FrameCore, "prefetch", lambda self, frame: None)


def _no_lookahead(self: Any, pipeline: Any, depth: int = 1) -> None:
    _LOOKAHEAD_INIT(self, pipeline, 0)


def _replay_fps(bag: Path, overrides: dict[str, Any], before: bool) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="mmp-bench-"))
    mp = pytest.MonkeyPatch()
    try:
        with mp.context() as m:
            if before:
                _use_replay_before(m)
            result = replay([bag], out, pictures=0, progress=False, overrides=overrides)
        return result.report["timing"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def with_models(bag: Path, overrides: dict[str, Any], rounds: int = 3) -> None:
    print(f"replay of {bag.name} ({'real models' if overrides else 'project-trained models'})")
    for tiled in (False, True):
        label = "tiled" if tiled else "single-pass"
        mode = {"detector.tiling": tiled, "segmenter.mode": "tiles" if tiled else "letterbox"}
        ov = {**overrides, **mode}
        runs: dict[str, list] = {"baseline": [], "after": []}
        for _ in range(rounds):  # interleaved: the machine's load hits both alike
            for name in runs:
                runs[name].append(_replay_fps(bag, ov, before=name == "baseline"))
        fps = {}
        for name, timings in runs.items():
            timing = sorted(timings, key=lambda t: t["frames_per_s"])[len(timings) // 2]
            stages = timing["stage_ms"]
            fps[name] = timing["frames_per_s"]
            other = sum(v["p50"] for k, v in stages.items() if k not in ("detector", "segmenter"))
            # Stage laps are this thread's: with the lookahead, the models' are waits.
            print(
                f"  {label:12} {name:9} {fps[name]:6.2f} frames/s; this thread waits for / runs "
                f"detector {stages['detector']['p50']:.1f}, segmenter "
                f"{stages.get('segmenter', {}).get('p50', 0):.1f}, the rest {other:.1f} ms (p50)"
            )
        goal = f">= {GOAL_FPS:g}" if not tiled else ""
        met = fps["after"] >= GOAL_FPS if not tiled else None
        print(f"  {label:12} after / baseline = {fps['after'] / fps['baseline']:.2f}x  {goal}")
        record(f"replay_fps_{label.replace('-', '_')}", fps["after"], "frames/s",
               fps["baseline"], goal, met)  # fmt: skip


def main() -> None:
    bag, overrides = _bag()
    without_models(bag, overrides)
    with_models(bag, overrides)


if __name__ == "__main__":
    main()
    print(f"results: {write_results()}")
