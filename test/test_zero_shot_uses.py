"""The zero-shot scorer where the node uses it, on real weights and a real KITTI frame:
open-vocabulary findings (``open_vocab.backend`` auto), captions and answers
(``vlm.backend: zero_shot``), and a model that fails its checks leaving the node running
without the stage and saying so in diagnostics."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest
from test_zero_shot import KITTI, need_classifier, need_wordnet

from multimodal_perception.accounting import diagnostics_statuses
from multimodal_perception.config import defaults
from multimodal_perception.findings import NO_MODEL, Findings
from multimodal_perception.frame import FrameResult
from multimodal_perception.fusion.consistency import Decision
from multimodal_perception.perception.detector import Detections
from multimodal_perception.perception.scene_qa import scene_qa
from multimodal_perception.perception.zero_shot import load_zero_shot
from multimodal_perception.perception.zero_shot_qa import ZeroShotVLM
from multimodal_perception.ros_pkg import outputs as out

TRUCK = (599, 156, 630, 189)  # KITTI object 000001, labelled Truck
CAR = (388, 182, 424, 203)  # labelled Car
SKY = (0, 0, 120, 120)
S = 1_000_000_000


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    need_wordnet()
    image = cv2.imread(str(KITTI / "image_2" / "000001.png"))
    if image is None:
        pytest.skip(f"real frame absent ({KITTI})")
    return image


def frame_result(stamp_ns: int, image: np.ndarray, boxes, classes) -> FrameResult:
    names = tuple(dict.fromkeys(classes))
    det = Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.full(len(boxes), 0.2, np.float32),
        np.array([names.index(c) for c in classes], np.int64),
        names,
    )
    decisions = [Decision(True, "kept", *[math.nan] * 4) for _ in boxes]
    return FrameResult(
        stamp_ns, "cam", image, det, decisions, list(range(len(boxes))), {}, {},
        {}, {}, "base_link", None, {}, "", {},
    )  # fmt: skip


def test_findings_use_the_zero_shot_scorer_when_the_model_directory_has_it(frame):
    params = defaults().with_overrides(
        {
            "models.directory": str(need_classifier()),
            "open_vocab.prompts": "vehicle,forklift,quickly",
            "open_vocab.max_box_score": 1.0,
            "open_vocab.zones": False,
        }
    )
    findings = Findings(params)
    try:
        assert findings.worker is not None and findings.worker.backend.name.startswith("zero_shot")
        findings.offer(frame_result(S, frame, [TRUCK, SKY], ["truck", "car"]), None, None)
        assert findings.wait_idle(30)
        found = findings.poll()
        (status,) = findings.diagnostics()
    finally:
        findings.close()
    truck = [f for f in found if f["prompt"] == "vehicle"]
    assert [f["box_2d"] for f in truck] == [list(TRUCK)]  # the sky is no vehicle
    assert truck[0]["method"] == "hierarchy" and truck[0]["score"] >= 0.3
    assert truck[0]["backend"] == "zero_shot:mobilenet_v2_imagenet+wordnet"
    assert not [f for f in found if f["prompt"] == "forklift"]
    # The prompt WordNet has no noun for is named, not silently scored 0.
    assert status.level == out.WARN and "'quickly': no WordNet noun" in status.message


def test_findings_without_a_model_say_so_and_a_bad_model_leaves_them_off(tmp_path, frame):
    bare = Findings(defaults().with_overrides({"open_vocab.prompts": "truck"}))
    assert bare.worker is None and bare.problem == NO_MODEL
    source = need_classifier() / "mobilenet_v2_imagenet"
    shutil.copytree(source, tmp_path / "mobilenet_v2_imagenet")
    (tmp_path / "mobilenet_v2_imagenet" / "imagenet_synsets.txt").write_text("n00000000 : x\n")
    params = defaults().with_overrides(
        {"models.directory": str(tmp_path), "open_vocab.prompts": "truck"}
    )
    broken = Findings(params)
    assert broken.worker is None
    assert "imagenet_synsets.txt: sha256" in broken.problem and "1b130d19" in broken.problem
    (status,) = broken.diagnostics()
    assert status.level == out.WARN and "findings off" in status.message
    broken.offer(frame_result(S, frame, [TRUCK], ["truck"]), None, None)  # nothing happens
    assert broken.poll() == [] and broken.close() == []


def test_a_vlm_that_fails_its_checks_is_an_error_in_diagnostics_and_the_node_goes_on(tmp_path):
    need_wordnet()
    params = defaults().with_overrides(
        {"vlm.backend": "zero_shot", "models.directory": str(tmp_path)}
    )
    qa = scene_qa(params)
    assert qa.worker is None and "mobilenet_v2_1.0_224_quant.onnx does not exist" in qa.problem
    statuses = diagnostics_statuses({}, {}, 0, qa)
    model = [s for s in statuses if s.name == "multimodal_perception: multimodal model"]
    assert [s.level for s in model] == [out.ERROR] and "vlm.backend=zero_shot" in model[0].message
    (answer,) = qa.ask("how many cars?")  # no frame yet: answered, not raised
    assert answer.backend == "grounded_fallback"


def scene(stamp_ns: int) -> dict:
    def obj(track, cls, box, range_m):
        return {"track_id": track, "class": cls, "confirmed": True, "box_2d": list(box),
                "range_m": range_m, "bearing_deg": 0.0, "speed_mps": 0.0}  # fmt: skip

    return {
        "stamp_ns": stamp_ns,
        "objects": [
            obj(1, "truck", TRUCK, 40.0),
            obj(2, "car", CAR, 25.0),
            obj(3, "person", SKY, 10.0),
        ],
    }


def test_answers_count_by_wordnet_kind_and_cite_image_scores(frame):
    vlm = ZeroShotVLM(load_zero_shot([], need_classifier()))
    many = vlm.answer("How many vehicles?", [frame], scene(S))
    assert many.startswith("2 vehicles in view: #1 truck (image ") and "#2 car" in many
    assert "#3" not in many  # a person is no vehicle, and the sky crop scores low
    assert vlm.answer("is there a truck?", [frame], scene(S)).startswith("Yes: #1 truck (image 0.")
    no = vlm.answer("is there a forklift?", [frame], scene(S))
    assert no.startswith("No forklift in view (best object 0.") and "n03384352" in no
    assert "unknown to the image model" in vlm.answer("is there a quickly?", [frame], scene(S))
    assert vlm.answer("where is #2?", [frame], scene(S)) == "car #2 is 25.0 m ahead."
    caption = vlm.describe([frame], scene(S))
    assert "truck #1 (image: vehicle 0." in caption
    assert "person #3 (image does not confirm: 0.0" in caption  # the sky, labelled a person


def test_a_track_is_scored_once_per_period_of_header_time(frame):
    vlm = ZeroShotVLM(load_zero_shot([], need_classifier()), track_period_s=1.0)
    vlm.describe([frame], scene(S))
    first = vlm.crops_scored
    vlm.describe([frame], scene(S + S // 2))  # half a second later: reused
    assert vlm.crops_scored == first == 3
    vlm.describe([frame], scene(3 * S))  # a period later: scored again
    assert vlm.crops_scored == 2 * first


def test_reading_questions_read_the_frame(frame):
    vlm = ZeroShotVLM(load_zero_shot([], need_classifier()))
    board = np.full((200, 700, 3), 235, np.uint8)
    cv2.putText(board, "EXIT 12", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (20, 20, 20), 4)
    said = vlm.answer("What does the sign say?", [board], {"objects": []})
    assert said.startswith("The image reads: 'EXIT 12'")


def test_proposals_are_thing_regions_no_detector_box_covers():
    from multimodal_perception.perception.proposals import segment_proposals

    names = ("road", "car", "traffic sign")
    labels = np.zeros((120, 200), np.uint8)
    labels[10:40, 10:60] = 1  # a car nobody boxed
    labels[60:100, 100:180] = 1  # a car inside a detector box
    labels[5:30, 150:170] = 2  # a sign
    labels[50:55, 10:15] = 2  # a speck
    boxes = np.array([[95, 55, 185, 105]], float)
    found = segment_proposals(labels, names, boxes, min_side=16)
    assert found == [((10, 10, 60, 40), "car"), ((150, 5, 170, 30), "traffic sign")]


def test_a_text_query_ranks_the_tracks_and_the_frame(frame):
    from multimodal_perception.perception.multimodal_worker import MultimodalWorker
    from multimodal_perception.perception.scene_qa import SceneQA, result_payload

    vlm = ZeroShotVLM(load_zero_shot([], need_classifier()))
    qa = SceneQA(MultimodalWorker(vlm, rate_hz=0.01))
    try:
        qa.offer(S, frame, scene(S))
        assert qa.query("vehicle") == []  # queued for the worker
        assert qa.worker.wait_idle(30)
        results = qa.poll()
    finally:
        qa.close()
    (result,) = [r for r in results if r.topic == "query_result"]
    doc = json.loads(result_payload(result))
    assert doc["schema"] == "mmp.query/1" and doc["method"] == "hierarchy"
    assert doc["wordnet"] == "n04524313" and result.stamp_ns == S
    ids = [r["track_id"] for r in doc["ranked"]]
    scores = [r["score"] for r in doc["ranked"]]
    assert ids[-1] == 3 and scores == sorted(scores, reverse=True)  # the sky crop last
    assert 0 <= doc["whole_image"] <= 1
    unknown = vlm.rank("quickly", [frame], scene(S))
    assert unknown["method"] == "unknown" and unknown["ranked"] == []
    assert "no WordNet noun" in unknown["reason"]


def test_mmp_query_ranks_a_real_bag(capsys):
    from conftest import CACHE, DATA
    from multimodal_perception.bagbuild import build_real_bag
    from multimodal_perception.cli import main

    bag = CACHE / "test_zero_shot_query" / "kitti_raw"  # 40 frames: tracks get confirmed
    shutil.rmtree(bag.parent, ignore_errors=True)
    build_real_bag("kitti_raw", DATA, bag)
    out = CACHE / "test_zero_shot_query" / "out"
    argv = ["query", str(bag), "vehicle", "--json", "--model-dir", str(need_classifier()),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["text"] == "vehicle" and doc["ranked"]
    assert all(0 <= r["score"] <= 1 for r in doc["ranked"])
    vehicles = [r for r in doc["ranked"] if r["class"] in ("car", "truck")]
    assert vehicles and vehicles[0]["score"] >= 0.5  # the cars and trucks ahead
