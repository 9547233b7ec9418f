"""Model latency per execution provider (run by bench/gpu_check.sh on a CUDA machine).

The real detector and segmenter (YOLOX-nano, Cityscapes DeepLab in letterbox mode) on a
1242x375 frame, through the project's own wrappers (pre-processing, inference, decoding),
with the TensorRT (FP16, engine cache), CUDA (IO binding) and CPU providers, each falling
back to the next where onnxruntime lacks it (the provider that actually ran is printed).
Goal on the GPU: detection + segmentation <= 5 ms per frame.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from common import median_seconds

from multimodal_perception.config import defaults
from multimodal_perception.perception.stack import load_models

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def main() -> None:
    directory = Path(os.environ.get("MMP_MODEL_DIR", SHARED_MODELS))
    if not directory.is_dir():
        sys.exit(f"no model directory at {directory} (set MMP_MODEL_DIR)")
    frame = np.random.default_rng(0).integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    for providers in ("tensorrt,cuda,cpu", "cuda,cpu", "cpu"):
        params = defaults().with_overrides(
            {"models.directory": str(directory), "models.providers": providers,
             "segmenter.mode": "letterbox"}
        )  # fmt: skip
        stack = load_models(params)
        det = median_seconds(lambda s=stack: s.detector(frame), repeat=30, warmup=5)
        seg = median_seconds(lambda s=stack: s.segmenter.segment(frame), repeat=30, warmup=5)
        ran = f"{stack.detector.backend.provider} / {stack.segmenter.backend.provider}"
        print(
            f"{providers:18} detector {det * 1e3:8.2f} ms  segmenter {seg * 1e3:8.2f} ms  "
            f"sum {(det + seg) * 1e3:8.2f} ms (GPU goal <= 5 ms) on {ran}"
        )


if __name__ == "__main__":
    main()
