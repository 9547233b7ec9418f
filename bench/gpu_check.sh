#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with CUDA (the `device` machine): the
# project venv with onnxruntime-gpu instead of onnxruntime, then the model latency per
# provider (TensorRT FP16 with an engine cache, CUDA with IO binding, CPU) and end-to-end
# replay frames/s with the real models on each provider. Prints everything; writes nothing
# outside .cache/ and out/gpu/. Usage: bench/gpu_check.sh [MODEL_DIR]  (default ../shared/models)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR="${1:-../shared/models}"
export MMP_MODEL_DIR="$MODEL_DIR"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
make venv >/dev/null
# onnxruntime-gpu carries the CUDA and TensorRT providers (CUDA/cuDNN/TensorRT libraries
# from the machine, or the nvidia-* wheels pip brings along).
.venv/bin/python -m pip install -q --upgrade "onnxruntime-gpu[cuda,cudnn]" tensorrt-cu12 || \
  .venv/bin/python -m pip install -q --upgrade onnxruntime-gpu
.venv/bin/python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
(cd bench && ../.venv/bin/python gpu_models.py)
BAG=bags/urban_crossing_5s
if [ -d ../shared/data/kitti_raw_2011_09_26 ]; then
  .venv/bin/mmp make-bag --dataset kitti_raw --out .cache/bags >/dev/null
  BAG=.cache/bags/kitti_raw
fi
for providers in tensorrt,cuda,cpu cuda,cpu cpu; do
  .venv/bin/mmp replay "$BAG" --out "out/gpu/$providers" --model-dir "$MODEL_DIR" --quiet \
    --set "models.providers=$providers" --set segmenter.mode=letterbox \
    | head -1 | sed "s/^/[$providers] /"
done
# The image-text models: the zero-shot scorer (MobileNetV2 ImageNet + WordNet) batched per
# provider, and PP-OCRv4 text reading on CUDA against CPU.
MODEL_DIR="$MODEL_DIR" .venv/bin/python - <<'PY'
import os, time
import numpy as np
from multimodal_perception.perception.runtime import RuntimeOptions
from multimodal_perception.perception.text_reading import TextReader
from multimodal_perception.perception.zero_shot import load_zero_shot
rng = np.random.default_rng(0)
crops = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(128)]
for providers in (("tensorrt", "cuda", "cpu"), ("cuda", "cpu"), ("cpu",)):
    scorer = load_zero_shot(["vehicle"], os.environ["MODEL_DIR"], RuntimeOptions(providers=providers))
    scorer.score(crops[:16])
    t0 = time.perf_counter()
    scorer.score(crops)
    rate = len(crops) / (time.perf_counter() - t0)
    print(f"zero-shot scorer on {scorer.classifier.provider}: {rate:.0f} crops/s")
frame = rng.integers(0, 256, (375, 1242, 3), dtype=np.uint8)
for cuda in (True, False):
    reader = TextReader(use_cuda=cuda)
    reader.read(frame)
    t0 = time.perf_counter()
    for _ in range(5):
        reader.read(frame)
    print(f"text reading use_cuda={cuda}: {(time.perf_counter() - t0) / 5 * 1e3:.0f} ms per frame")
PY
