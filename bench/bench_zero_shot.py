"""The zero-shot image-text scorer (MobileNetV2 ImageNet + WordNet) on real labelled frames.

KITTI object (3 frames) and View-of-Delft (2 frames) ground-truth boxes against background
boxes of the same size (3 per labelled box, seeded, IoU < 0.05 with every labelled box):
- second opinion: AUC of the class-group noun's score, labelled crops of the group against
  background crops, all sizes and crops >= 60 px;
- detector boxes: YOLOX-nano (single pass) boxes true (IoU >= 0.5 with a labelled box of
  the class group) against false, AUC of their class noun's score;
- retrieval: average precision per query, positives the query's group, negatives the
  background crops and the other groups;
- throughput: crops per second, batched, onnxruntime on all cores, against one at a time.
Needs ../shared (models and data) and the bags `mmp make-bag --dataset kitti_object|vod`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from multimodal_perception.bagbuild import build_real_bag
from multimodal_perception.evaluation import iou_matrix
from multimodal_perception.paths import data_dir, model_dir
from multimodal_perception.perception.runtime import RuntimeOptions
from multimodal_perception.perception.zero_shot import load_zero_shot
from multimodal_perception.zero_shot_eval import BACKGROUND, auc, average_precision, labelled_crops

try:  # run as part of the bench package or as a script from bench/
    from .common import record, write_results
except ImportError:
    from common import record, write_results

REPO = Path(__file__).resolve().parents[1]
BAGS = REPO / ".cache" / "bench_zero_shot"
GROUP_QUERY = {"vehicle": "vehicle", "two-wheeler": "wheeled vehicle", "pedestrian": "person"}
DETECTOR_GROUP = {"car": "vehicle", "truck": "vehicle", "bus": "vehicle",
                  "bicycle": "two-wheeler", "motorcycle": "two-wheeler",
                  "person": "pedestrian"}  # fmt: skip
QUERIES = {"vehicle": {"vehicle", "two-wheeler"}, "car": {"vehicle"}, "truck": {"vehicle"},
           "bicycle": {"two-wheeler"}, "motorcycle": {"two-wheeler"},
           "wheeled vehicle": {"two-wheeler", "vehicle"}, "person": {"pedestrian"},
           "trash can": set()}  # fmt: skip
MIN_SIDE = 60


def _bags() -> list[Path]:
    out = []
    for name in ("kitti_object", "vod"):
        if not (BAGS / name).exists():
            build_real_bag(name, data_dir(), BAGS / name)
        out.append(BAGS / name)
    return out


def _detector_boxes(images: list[np.ndarray], crops) -> list[tuple[int, str, tuple, bool]]:
    from multimodal_perception.config import load_parameters
    from multimodal_perception.perception.stack import load_models

    params = load_parameters().with_overrides(
        {"models.directory": str(model_dir()), "models.segmenter": "none"}
    )
    stack = load_models(params)
    out = []
    for i, image in enumerate(images):
        det = stack.detector(image)
        for box, cls in zip(det.boxes, det.labels(), strict=True):
            group = DETECTOR_GROUP.get(cls)
            if group is None:
                continue
            gt = np.array([c.box for c in crops if c.image_index == i and c.group == group])
            true = bool(len(gt)) and float(iou_matrix(box[None], gt).max()) >= 0.5
            out.append((i, group, tuple(float(v) for v in box), true))
    stack.close()
    return out


def main() -> int:
    bags = _bags()
    crops, images = labelled_crops(bags)
    queries = sorted({*QUERIES, *GROUP_QUERY.values()})
    scorer = load_zero_shot(queries, model_dir())
    pixels = [scorer.cut(images[c.image_index], c.box) for c in crops]
    scores = scorer.score(pixels)
    col = {q: scorer.prompts.index(q) for q in queries}
    groups = np.array([c.group for c in crops])
    sides = np.array([c.side for c in crops])
    n_bg = int((groups == BACKGROUND).sum())
    print(f"{len(crops) - n_bg} labelled crops, {n_bg} background, {len(images)} frames")
    print("second opinion: labelled crops of a group against background crops")
    for group, query in GROUP_QUERY.items():
        for label, big in (("all sizes", sides > 0), (f">= {MIN_SIDE} px", sides >= MIN_SIDE)):
            pos = scores[(groups == group) & big, col[query]]
            neg = scores[(groups == BACKGROUND) & big, col[query]]
            value = auc(pos, neg)
            goal = "AUC >= 0.9" if group != "pedestrian" and "px" in label else ""
            met = None if not goal or np.isnan(value) else bool(value >= 0.9)
            print(
                f"  {group:12} {query!r:18} {label:10} AUC {value:.3f}  ({len(pos)} vs {len(neg)})"
            )
            record(f"zero-shot AUC {group} vs background, {label}", value, "AUC", None, goal, met)
    print("detector boxes (YOLOX-nano single pass): true against false, by class noun")
    boxes = _detector_boxes(images, crops)
    if boxes:
        det_pixels = [scorer.cut(images[i], b) for i, _, b, _ in boxes]
        det_scores = scorer.score(det_pixels)
        for group, query in GROUP_QUERY.items():
            s = np.array(
                [det_scores[k, col[query]] for k, (_, g, _, _) in enumerate(boxes) if g == group]
            )
            t = np.array([true for _, g, _, true in boxes if g == group], bool)
            value = auc(s[t], s[~t]) if len(s) else float("nan")
            print(f"  {group:12} AUC {value:.3f}  ({int(t.sum())} true, {int((~t).sum())} false)")
            record(f"zero-shot AUC detector {group} true vs false", value, "AUC")
    print("retrieval: average precision per query (negatives: background and other groups)")
    for query, wanted in QUERIES.items():
        relevant = np.isin(groups, list(wanted))
        value = average_precision(scores[:, col[query]], relevant)
        print(f"  {query!r:18} AP {value:.3f}  ({int(relevant.sum())} relevant of {len(crops)})")
        record(f"zero-shot AP {query!r}", value, "AP")
    batch = (pixels * 4)[:128]
    two = load_zero_shot(queries, model_dir(), RuntimeOptions(intra_op_threads=2))
    rates = {}
    for label, s in (("2 threads", two), ("1 thread (the node's worker)", scorer)):
        s.score(batch[:16])
        t0 = time.perf_counter()
        s.score(batch)
        rates[label] = len(batch) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in batch[:32]:
        two.score([p])
    single = 32 / (time.perf_counter() - t0)
    print(f"throughput: {rates} crops/s batched, {single:.0f} one at a time (2 threads)")
    record("zero-shot scorer throughput, batched, 2 cores", rates["2 threads"], "crops/s",
           single, ">= 100 crops/s", bool(rates["2 threads"] >= 100))  # fmt: skip
    record("zero-shot scorer throughput, batched, 1 thread", rates["1 thread (the node's worker)"],
           "crops/s")  # fmt: skip
    print(f"wrote {write_results()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
