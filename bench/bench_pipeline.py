"""Pipeline cost per frame without model inference (ms, and as a fraction of the model
time), and replay frames per second with YOLOX-nano + Cityscapes DeepLab, single-pass and
tiled (target at least 10 single-pass), on the KITTI raw bag when ../shared is present,
else on the shipped synthetic bag with the project-trained models."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from multimodal_perception.replay import replay

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMP_SHARED_DIR", REPO.parent / "shared"))


def _bag() -> tuple[Path, dict]:
    models = SHARED / "models"
    if (SHARED / "data" / "kitti_raw_2011_09_26").is_dir() and (models / "yolox_nano_416").is_dir():
        from multimodal_perception.bagbuild import build_real_bag

        bag = REPO / ".cache" / "bench" / "kitti_raw"
        if not bag.exists():
            build_real_bag("kitti_raw", SHARED / "data", bag)
        return bag, {"models.directory": str(models)}
    return REPO / "bags" / "urban_crossing_5s", {}


def main() -> None:
    bag, overrides = _bag()
    print(f"replay of {bag.name} ({'real models' if overrides else 'project-trained models'})")
    out = Path(tempfile.mkdtemp(prefix="mmp-bench-"))
    try:
        for tiled in (False, True):
            result = replay(
                [bag],
                out / str(tiled),
                pictures=0,
                progress=False,
                # Single-pass: one detector call and one letterboxed segmenter call a frame.
                overrides={
                    **overrides,
                    "detector.tiling": tiled,
                    "segmenter.mode": "tiles" if tiled else "letterbox",
                },
            )
            timing = result.report["timing"]
            stages = timing["stage_ms"]
            model_ms = sum(stages[k]["p50"] for k in ("detector", "segmenter") if k in stages)
            other = {k: v["p50"] for k, v in stages.items() if k not in ("detector", "segmenter")}
            other_ms = float(np.sum(list(other.values())))
            label = "tiled" if tiled else "single-pass"
            print(
                f"  {label:12} {timing['frames_per_s']:6.2f} frames/s"
                f"{'  (target >= 10)' if not tiled else ''}; models {model_ms:.1f} ms/frame "
                f"(detector {stages['detector']['p50']:.1f}, segmenter "
                f"{stages.get('segmenter', {}).get('p50', 0):.1f})"
            )
            print(
                f"  {label:12} pipeline without models {other_ms:.2f} ms/frame = "
                f"{other_ms / model_ms:.2f} x model time; "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(other.items()))
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
