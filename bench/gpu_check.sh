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
