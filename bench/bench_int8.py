"""YOLOX-nano FP32 against its INT8 variant (``yolox_nano_416_int8``), measured in one run
on the real data, FP32 always the same-run baseline:

- latency: ``session.run`` median on a KITTI raw frame, 1 and 2 intra-op threads, the two
  models interleaved round by round (the machine is shared: its load hits both alike);
- accuracy: the labelled real frames (KITTI object 3 + View-of-Delft 2) replayed through
  the whole pipeline with ``models.detector`` set to each, single-pass and tiled, scored
  like ``mmp eval`` at IoU 0.5: recall/precision of every detector box (before the filter)
  and of the kept boxes (42 GT boxes, many small: few true positives, a weak signal);
- agreement on the 40 unlabelled KITTI raw frames: FP32 boxes matched by INT8 boxes
  (same class, IoU >= 0.5), split into the recipe's calibration frames and the held-out
  rest (consecutive 10 Hz frames: held-out is near, not independent);
- replay frames/s on the KITTI raw bag (real models; default parameters, i.e. the tiled
  segmenter, and with ``segmenter.mode: letterbox``), the two detectors alternating.

Makes the INT8 model with the recipe when ``.cache/models`` lacks a loadable one. Needs
../shared (models and data). Rows go to bench/results.json (``common.record``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from multimodal_perception.bagbuild import build_real_bag
from multimodal_perception.evaluation import ClassScore, evaluate_output_bag
from multimodal_perception.perception.detector import Detector
from multimodal_perception.perception.manifest import available_manifests
from multimodal_perception.perception.models import derived_dir, load_model
from multimodal_perception.perception.preprocess import resize_image, to_tensor
from multimodal_perception.perception.quantize import (
    Agreement,
    calibration_frames,
    quantize_model,
    read_provenance,
)
from multimodal_perception.perception.runtime import ModelLoadError, RuntimeOptions
from multimodal_perception.replay import replay

try:
    from .common import median_seconds, record, write_results
except ImportError:
    from common import median_seconds, record, write_results

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMP_SHARED_DIR", REPO.parent / "shared"))
MODELS, DATA = SHARED / "models", SHARED / "data"
RAW = DATA / "kitti_raw_2011_09_26" / "image_02"
FP32, INT8 = "yolox_nano_416", "yolox_nano_416_int8"
MAX_RECALL_LOSS = 0.05  # this bench's goal for INT8: at most 5 points of recall lost


def _load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def ensure_int8() -> Path:
    manifests = available_manifests()
    try:
        load_model(INT8, MODELS, RuntimeOptions(providers=("cpu",), warmup_runs=0))
    except ModelLoadError as exc:
        print(f"making {INT8} ({exc})")
        src = manifests[FP32]
        quantize_model(
            manifests[INT8], src, MODELS / src.file, derived_dir(), calibration_frames(RAW, 20)
        )
    return derived_dir() / manifests[INT8].file


def latency(frame: np.ndarray, rounds: int = 5) -> None:
    for threads in (1, 2):
        options = RuntimeOptions(providers=("cpu",), intra_op_threads=threads, warmup_runs=3)
        sessions = {}
        for name in (FP32, INT8):
            manifest, backend = load_model(name, MODELS, options)
            tensor = to_tensor([resize_image(frame, manifest.input)[0]], manifest.input)
            sessions[name] = (backend.session, {backend.input_names[0]: tensor})
        samples: dict[str, list[float]] = {FP32: [], INT8: []}
        for _ in range(rounds):  # interleaved rounds
            for name, (session, feeds) in sessions.items():
                samples[name].append(
                    median_seconds(lambda s=session, f=feeds: s.run(None, f), repeat=20)
                )
        ms = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
        ratio = ms[INT8] / ms[FP32]
        print(
            f"session.run, {threads} thread{'s' if threads > 1 else ''}: FP32 {ms[FP32]:.2f} ms, "
            f"INT8 {ms[INT8]:.2f} ms = {ratio:.2f}x  ({_load()})"
        )
        record(f"int8_detector_session_ms_{threads}thread", ms[INT8], "ms", ms[FP32],
               "< 1.0x FP32", ratio < 1.0)  # fmt: skip


def _bag(dataset: str) -> Path:
    bag = REPO / ".cache" / "bench" / dataset
    if not bag.exists():
        build_real_bag(dataset, DATA, bag)
    return bag


def _replay(bag: Path, detector: str, **params: Any) -> tuple[Path, dict[str, Any]]:
    out = Path(tempfile.mkdtemp(prefix="mmp-bench-int8-"))
    overrides = {"models.directory": str(MODELS), "models.detector": detector, **params}
    result = replay([bag], out, pictures=0, progress=False, overrides=overrides)
    assert result.report["models"]["detector"] == detector
    return out, result.report


def _totals(scores: list[dict[str, ClassScore]]) -> tuple[float, float, int, int, int]:
    """Recall, precision, GT, TP, FP over several bags' per-class scores."""
    n_gt = tp = fp = 0
    for per_class in scores:
        for s in per_class.values():
            n_gt, tp, fp = n_gt + s.n_gt, tp + s.tp, fp + s.fp
    return tp / max(n_gt, 1), tp / max(tp + fp, 1), n_gt, tp, fp


def accuracy(tiled: bool) -> None:
    mode = "tiled" if tiled else "single_pass"
    rows: dict[str, dict[str, list]] = {FP32: defaultdict(list), INT8: defaultdict(list)}
    for dataset in ("kitti_object", "vod"):
        bag = _bag(dataset)
        for name in (FP32, INT8):
            out, _ = _replay(bag, name, **{"detector.tiling": tiled})
            try:
                scores = evaluate_output_bag(out / "output.mcap")
            finally:
                shutil.rmtree(out, ignore_errors=True)
            rows[name]["before"].append(dict(scores.before.scores))
            rows[name]["after"].append(dict(scores.after.scores))
            rows[name]["frames"].append(scores.frames)
    frames = sum(rows[FP32]["frames"])
    print(f"labelled real frames (KITTI object + VoD, {frames}), {mode}, IoU 0.5:")
    for stage in ("before", "after"):
        fr, fp_, n, ftp, ffp = _totals(rows[FP32][stage])
        ir, ip, _, itp, ifp = _totals(rows[INT8][stage])
        print(
            f"  {stage:6} the filter: FP32 recall {fr:.3f} precision {fp_:.3f} "
            f"(tp {ftp}, fp {ffp}); INT8 recall {ir:.3f} precision {ip:.3f} (tp {itp}, fp "
            f"{ifp}); {n} GT boxes"
        )
        record(f"int8_{mode}_recall_{stage}_filter", ir, "fraction", fr,
               f">= FP32 - {MAX_RECALL_LOSS}", ir >= fr - MAX_RECALL_LOSS)  # fmt: skip
        record(f"int8_{mode}_precision_{stage}_filter", ip, "fraction", fp_)


def agreement(int8_path: Path) -> None:
    calibrated = set(read_provenance(int8_path)["calibration"]["frames"])
    options = RuntimeOptions(providers=("cpu",), intra_op_threads=1)
    fp32 = Detector(*load_model(FP32, MODELS, options))
    int8 = Detector(*load_model(INT8, MODELS, options))
    parts = {"held_out": Agreement(), "calibration": Agreement(), "all": Agreement()}
    for path in sorted(RAW.glob("*.png")):
        image = cv2.imread(str(path))
        ref, got = fp32.detect(image), int8.detect(image)
        parts["calibration" if path.name in calibrated else "held_out"].add(ref, got)
        parts["all"].add(ref, got)
    for key, a in parts.items():
        print(f"KITTI raw agreement, {key:11}: {a.summary()}")
    for key in ("held_out", "all"):
        a = parts[key]
        record(f"int8_kitti_raw_{key}_fp32_boxes_matched", a.matched_fraction, "fraction",
               None, ">= 0.80", a.matched_fraction >= 0.80)  # fmt: skip
        record(f"int8_kitti_raw_{key}_mean_iou", a.mean_iou, "IoU")


def replay_fps(segmenter_mode: str, rounds: int = 2) -> None:
    bag = _bag("kitti_raw")
    fps: dict[str, list[float]] = {FP32: [], INT8: []}
    det_ms: dict[str, list[float]] = {FP32: [], INT8: []}
    for _ in range(rounds):  # alternating runs
        for name in (FP32, INT8):
            out, report = _replay(bag, name, **{"segmenter.mode": segmenter_mode})
            shutil.rmtree(out, ignore_errors=True)
            fps[name].append(report["timing"]["frames_per_s"])
            det_ms[name].append(report["timing"]["stage_ms"]["detector"]["p50"])
            print(f"  segmenter {segmenter_mode:9} {name:20} {fps[name][-1]:6.2f} frames/s, "
                  f"detector p50 {det_ms[name][-1]:.1f} ms  ({_load()})")  # fmt: skip
    f32, i8 = float(np.median(fps[FP32])), float(np.median(fps[INT8]))
    print(
        f"replay kitti_raw, segmenter {segmenter_mode}: FP32 {f32:.2f} frames/s, "
        f"INT8 {i8:.2f} frames/s = {i8 / f32:.2f}x"
    )
    record(
        f"int8_replay_fps_kitti_raw_segmenter_{segmenter_mode}",
        i8,
        "frames/s",
        f32,
        ">= FP32",
        i8 >= f32,
    )
    key = f"int8_replay_detector_p50_ms_segmenter_{segmenter_mode}"
    record(key, float(np.median(det_ms[INT8])), "ms", float(np.median(det_ms[FP32])))


def main() -> None:
    if not (MODELS / "yolox_nano_416").is_dir() or not RAW.is_dir():
        raise SystemExit(f"bench_int8 needs {MODELS} and {RAW}")
    int8_path = ensure_int8()
    print(f"FP32 {MODELS / available_manifests()[FP32].file} vs INT8 {int8_path} ({_load()})")
    latency(cv2.imread(str(sorted(RAW.glob("*.png"))[1])))
    agreement(int8_path)
    for tiled in (False, True):
        accuracy(tiled)
    for segmenter_mode in ("tiles", "letterbox"):
        replay_fps(segmenter_mode)


if __name__ == "__main__":
    main()
    print(f"results: {write_results()}")
