"""The grounded fallback (no model): answers from the pipeline's scene, scored against the
ground truth of a synthetic scenario seed never used to write its rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from multimodal_perception.config import load_parameters
from multimodal_perception.perception.multimodal import GroundedFallback
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore
from multimodal_perception.sim.bag import SyntheticConfig, write_synthetic_bag

QUESTIONS = ("How many cars?", "What is closest?", "Is anything approaching?")
# The fallback's rules were written looking at the shipped bag (seed 0); they are scored on
# a scenario seed never used for that (nor for training the tiny models: seeds 1-40).
HELD_OUT_SEED = 311


def fallback_answers(bag: Path) -> dict[str, list[tuple[str, dict]]]:
    """Per question, (answer, ground-truth scene) for every frame after the first 10 (tracks
    confirmed by then), from one replay of ``bag``."""
    params = load_parameters(REPO / "config" / "perception.yaml")
    pipeline = Pipeline(params, RosbagsFactory(get_project_typestore()))
    truth = {
        json.loads(r.msg.data)["stamp_ns"]: json.loads(r.msg.data)
        for r in iter_bag(bag, ["/ground_truth/scene"])
    }
    out: dict[str, list[tuple[str, dict]]] = {q: [] for q in QUESTIONS}
    for rec in iter_bag(bag):
        for o in pipeline.process(rec.topic, rec.msg):
            if o.topic == "scene" and pipeline.frames > 10:
                for question in QUESTIONS:
                    (answer,) = pipeline.ask(question)
                    out[question].append((json.loads(answer.msg.data)["text"], truth[o.stamp_ns]))
    pipeline.close()
    return out


def _visible(gt: dict, min_pixels: int = 300, max_range: float = 50.0) -> list[dict]:
    return [
        o for o in gt["objects"] if o["visible_pixels"] >= min_pixels and o["range_m"] <= max_range
    ]


def count_is_right(text: str, gt: dict) -> bool:
    """The count includes every clearly visible car (box at least 16 px tall, at least half
    visible: the don't-care rule of the detector evaluation) and no more cars than are
    visible at all."""
    n = int(re.match(r"(\d+) car", text).group(1))
    cars = [o for o in gt["objects"] if o["detection_class"] == "car"]
    clear = [
        o
        for o in cars
        if o["box_visible"]
        and o["visibility"] >= 0.5
        and o["box_visible"][3] - o["box_visible"][1] >= 16
    ]
    seen = [o for o in cars if o["visible_pixels"] > 0]
    return len(clear) <= n <= len(seen)


def closest_is_right(text: str, gt: dict) -> bool:
    nearest = min(_visible(gt, 100), key=lambda o: o["range_m"])
    return text.startswith(f"The closest is {nearest['detection_class']} #")


def approaching_is_right(text: str, gt: dict) -> bool:
    """Yes exactly when a visible object closes in at more than 1 m/s, naming at least one
    of the classes that do (every frame of every scenario has one: the No side is
    test_fallback_says_no_when_nothing_approaches)."""
    closing = set()
    for o in _visible(gt, 100):
        c = np.array(o["center_base"][:2])
        rate = float(np.array(o["relative_velocity_base"][:2]) @ (c / np.linalg.norm(c)))
        if rate < -1.0:
            closing.add(o["detection_class"])
    named = set(re.findall(r"([a-z]+) #\d+", text))
    return text.startswith("Yes") and bool(named & closing) if closing else text.startswith("No")


RULES = {
    "How many cars?": count_is_right,
    "What is closest?": closest_is_right,
    "Is anything approaching?": approaching_is_right,
}


@pytest.fixture(scope="module")
def held_out_answers(tmp_path_factory) -> dict[str, list[tuple[str, dict]]]:
    bag = tmp_path_factory.mktemp("fallback") / "bag"
    write_synthetic_bag(bag, SyntheticConfig("urban_crossing", seconds=5.0, seed=HELD_OUT_SEED))
    return fallback_answers(bag)


# Share of the 40 frames answered right, measured 2026-12-02 on urban_crossing 5 s bags of
# seeds 311 / 312 / 313 (seed 0, the shipped bag the rules were written on, in brackets):
#   How many cars?            0.800 / 0.775 / 0.850 (0.825)
#   What is closest?          0.950 / 0.975 / 0.925 (0.975)
#   Is anything approaching?  0.950 / 0.950 / 0.925 (0.925)
# Each bound: the lowest held-out share minus a 0.1 margin.
@pytest.mark.parametrize(
    ("question", "bound"),
    [("How many cars?", 0.67), ("What is closest?", 0.82), ("Is anything approaching?", 0.82)],
)
def test_fallback_answers_like_the_ground_truth_on_a_held_out_seed(
    held_out_answers, question, bound
):
    pairs = held_out_answers[question]
    correct = sum(RULES[question](text, gt) for text, gt in pairs)
    print(f"{question!r}: {correct}/{len(pairs)} frames match the ground truth")
    assert len(pairs) >= 35
    assert correct / len(pairs) >= bound


def test_fallback_says_no_when_nothing_approaches():
    car = {"confirmed": True, "class": "car", "track_id": 3, "range_m": 12.3}
    car |= {"bearing_deg": 5.0, "speed_mps": 6.0}
    image = np.zeros((96, 128, 3), np.uint8)
    question = "Is anything approaching?"
    receding = {"objects": [{**car, "range_rate_mps": 0.5}]}
    assert GroundedFallback().answer(question, [image], receding).startswith("No")
    closing = {"objects": [{**car, "range_rate_mps": -4.5}]}
    assert GroundedFallback().answer(question, [image], closing).startswith("Yes: car #3 at 4.5")
