"""The project-trained tiny models on held-out synthetic frames (seeds never trained on),
through the deployed path: ONNX file -> runtime -> Detector/Segmenter."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_perception.perception.detector import Detector
from multimodal_perception.perception.models import load_model
from multimodal_perception.perception.segmenter import Segmenter
from multimodal_perception.perception.training.data import frame_specs, render_frame
from multimodal_perception.perception.training.evaluate import detection_map, segmentation_iou
from multimodal_perception.perception.training.train_all import EVAL_SEEDS, TRAIN_SEEDS

# Seeds used for nothing else: training used 1-40, the scores printed while training (and
# looked at while tuning it) 100-104, and this test used to run 200-202.
SEEDS = range(300, 303)
# Measured 2026-12-02 on 36 frames each (frame_specs(seeds, 4, sample_seed=9)): mAP50 0.931
# and mean IoU 0.827 on seeds 300-302; 0.925 / 0.824 on 303-305, 0.924 / 0.826 on 306-308,
# 0.916 / 0.827 on 200-202. Bounds: the seeds-300-302 value minus 0.07 (mAP) and 0.06 (IoU),
# below every measurement. The same synthetic world: in-distribution scores, not a claim
# about real images.
MAP50_MIN = 0.86
MEAN_IOU_MIN = 0.77


@pytest.fixture(scope="module")
def held_out():
    assert not set(SEEDS) & (set(EVAL_SEEDS) | set(TRAIN_SEEDS))
    specs = frame_specs(SEEDS, 4, sample_seed=9)  # 36 frames
    return [render_frame(s) for s in specs]


def test_tiny_detector_map_on_held_out_frames(held_out):
    scorer = detection_map(Detector(*load_model("mmp_tinydet_synth")), held_out)
    print(scorer.format("mmp_tinydet_synth, held-out synthetic frames"))
    assert scorer.mean_ap() >= MAP50_MIN


def test_tiny_segmenter_miou_on_held_out_frames(held_out):
    ious = segmentation_iou(Segmenter(*load_model("mmp_tinyseg_synth")), held_out)
    print("mmp_tinyseg_synth IoU: " + ", ".join(f"{k} {v:.2f}" for k, v in ious.items()))
    print(f"mean IoU {np.mean(list(ious.values())):.3f}")
    assert np.mean(list(ious.values())) >= MEAN_IOU_MIN
