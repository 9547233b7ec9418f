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


@pytest.fixture(scope="module")
def held_out():
    assert not set(EVAL_SEEDS) & set(TRAIN_SEEDS)
    specs = frame_specs(range(200, 203), 4, sample_seed=9)  # 36 frames, unseen seeds
    return [render_frame(s) for s in specs]


def test_tiny_detector_map_on_held_out_frames(held_out):
    scorer = detection_map(Detector(*load_model("mmp_tinydet_synth")), held_out)
    print(scorer.format("mmp_tinydet_synth, held-out synthetic frames"))
    assert scorer.mean_ap() >= 0.8


def test_tiny_segmenter_miou_on_held_out_frames(held_out):
    ious = segmentation_iou(Segmenter(*load_model("mmp_tinyseg_synth")), held_out)
    print("mmp_tinyseg_synth IoU: " + ", ".join(f"{k} {v:.2f}" for k, v in ious.items()))
    print(f"mean IoU {np.mean(list(ious.values())):.3f}")
    assert np.mean(list(ious.values())) >= 0.7
