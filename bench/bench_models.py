"""Model runtime: the wrapper's overhead over a raw ``session.run`` on the same inputs and
threads (pre/post-processing excluded; target at most 1.03x), and per-model pre-process,
inference and post-process milliseconds (one thread). Raw and wrapper calls alternate, so
the machine's drift hits both alike; rows go to bench/results.json."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from multimodal_perception.perception.detector import Detector
from multimodal_perception.perception.manifest import available_manifests
from multimodal_perception.perception.models import load_model, model_directory
from multimodal_perception.perception.preprocess import resize_image, to_tensor
from multimodal_perception.perception.runtime import RuntimeOptions
from multimodal_perception.perception.segmenter import Segmenter

try:
    from .common import median_seconds_interleaved, record, report, write_results
except ImportError:
    from common import median_seconds_interleaved, record, report, write_results

REPO = Path(__file__).resolve().parents[1]


def _frame() -> np.ndarray:
    data = Path(os.environ.get("MMP_DATA_DIR", REPO.parent / "shared" / "data"))
    image = data / "kitti_object/training/image_2/000001.png"
    if image.exists():
        return cv2.imread(str(image))
    from multimodal_perception.sim.preview import preview

    return preview("urban_crossing", 3.0)[:, :640].copy()


def main() -> None:
    options = RuntimeOptions(providers=("cpu",), intra_op_threads=1, warmup_runs=3)
    directory = model_directory() or (REPO.parent / "shared" / "models")
    frame = _frame()
    names = [n for n, m in available_manifests().items()
             if m.trained_by_project or (directory / m.file).exists()]  # fmt: skip
    print(f"models on {frame.shape[1]}x{frame.shape[0]}, onnxruntime CPU, 1 thread")
    for name in names:
        manifest, backend = load_model(name, directory, options)
        spec = manifest.input
        tensor = to_tensor([resize_image(frame, spec)[0]], spec)
        feeds = {backend.input_names[0]: tensor}
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the wrapper
        raw = ort.InferenceSession(str(directory / manifest.file) if not manifest.trained_by_project
                                   else str(Path(manifest.path).parent / manifest.file), so,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
        raw_t, wrap_t = median_seconds_interleaved(
            [lambda r=raw, f=feeds: r.run(None, f), lambda b=backend, f=feeds: b.run(f)],
            repeat=40,
        )
        report(f"{name}: raw session.run", raw_t)
        report(f"{name}: wrapper backend.run", wrap_t, raw_t, "<= 1.03x")
        record(f"wrapper_ms_{name}", wrap_t * 1e3, "ms", raw_t * 1e3, "<= 1.03x",
               wrap_t <= 1.03 * raw_t)  # fmt: skip
        if manifest.task == "detection":
            stage = Detector(manifest, backend)
            call = stage.detect
        elif manifest.task == "segmentation":
            stage = Segmenter(manifest, backend)
            call = stage.segment
        elif manifest.task == "classification":
            continue  # crops, not frames: bench_zero_shot.py measures it
        else:
            stage = Segmenter(manifest, backend)
            call = stage.lanes
        call(frame)
        times = []
        for _ in range(10):
            call(frame)
            times.append(stage.last_times)
        pre = np.median([t.preprocess_ms for t in times])
        inf = np.median([t.inference_ms for t in times])
        post = np.median([t.postprocess_ms for t in times])
        calls = times[-1].calls
        print(
            f"  {name}: pre {pre:.1f} ms, inference {inf:.1f} ms, post {post:.1f} ms "
            f"({calls} call{'s' if calls > 1 else ''}, tiles as needed)"
        )


if __name__ == "__main__":
    main()
    print(f"results: {write_results()}")
