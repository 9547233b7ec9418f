"""Open-vocabulary findings: the CLIP directory, the scorer, zone regions, the stage.

No real CLIP weights exist on the test machines (nothing is downloaded), so the CLIP here
is a pair of ONNX encoders built by the test with HAND-SET weights of known meaning: the
image embedding is the crop's mean colour (ReduceMean, MatMul) as hue plus a constant
"plain" part; the text embedding sums a few colour words' rows of a fixed table (Gather,
ReduceSum), tokenised by a ``tokenizers`` WordLevel tokenizer.json. So "a red patch is
'red spill', not 'blue door'" is a fact about these weights, checked through the loading
path a real open_clip / Hugging Face ONNX export takes (manifest.json with sha256,
(N,3,224,224) CLIP-normalised RGB, (N,77) int64 ids and a mask, named outputs). A real
CLIP's recognition quality is not tested here.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from clip_common import BLUE, GREY, PROMPTS, RED, H, W, build_clip_dir, sha256_of

from multimodal_perception.config import defaults
from multimodal_perception.findings import (
    FINDINGS_SCHEMA,
    NO_MODEL,
    Findings,
    findings_outputs,
    zone_region,
)
from multimodal_perception.frame import FrameResult
from multimodal_perception.fusion.consistency import Decision
from multimodal_perception.fusion.transforms import TransformBuffer
from multimodal_perception.fusion.zones import Rule, Zone
from multimodal_perception.perception.detector import Detections
from multimodal_perception.perception.manifest import ManifestError
from multimodal_perception.perception.open_vocab import OpenVocabScorer, load_clip
from multimodal_perception.perception.runtime import ModelLoadError
from multimodal_perception.ros_pkg import outputs as out
from multimodal_perception.ros_pkg.camera_info import CameraModel
from multimodal_perception.ros_pkg.tf_msgs import transform_from_matrix


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_clip_dir(tmp_path_factory.mktemp("clip"))


def patch(colour, size=(60, 80)) -> np.ndarray:
    return np.full((*size, 3), colour, np.uint8)


# -- the model directory and the scorer ---------------------------------------------------
def test_a_manifest_sha256_mismatch_names_the_file_and_both_digests(tmp_path):
    d = build_clip_dir(tmp_path / "clip")
    load_clip(d)  # as built: verifies
    good = sha256_of(d / "text_encoder.onnx")
    with (d / "text_encoder.onnx").open("ab") as fh:
        fh.write(b"\0")  # one byte more: another file than the manifest pins
    bad = sha256_of(d / "text_encoder.onnx")
    with pytest.raises(ModelLoadError) as err:
        load_clip(d)
    assert "text_encoder.onnx" in str(err.value)
    assert good in str(err.value) and bad in str(err.value)
    (d / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json"):
        load_clip(d)


def test_the_hand_set_clip_finds_a_red_patch_by_red_spill_not_by_blue_door(clip_dir):
    clip, manifest = load_clip(clip_dir)
    scorer = OpenVocabScorer(clip, ["red spill", "blue door"], manifest.background_prompts)
    red, floor, blue = patch(RED), patch(GREY), patch(BLUE)
    scores = scorer.score([red, floor, blue])
    assert scores.shape == (3, 2) and scorer.calls == 1 and scorer.crops == 3
    min_score = defaults()["open_vocab.min_score"]
    assert scores[0, 0] > min_score and scores[0, 1] < min_score  # red: spill, not door
    assert scores[2, 1] > min_score and scores[2, 0] < min_score  # blue: door, not spill
    assert scores[1].max() < min_score  # plain floor: the background prompts take it
    # Why there are background prompts: without them softmax shares the floor crop's
    # score out among the prompts, half each, and plain floor would be a finding.
    bare = OpenVocabScorer(clip, ["red spill", "blue door"], background=())
    assert bare.score([floor])[0].min() > min_score


# -- zone regions ---------------------------------------------------------------------------
CAM_HEIGHT = 1.0


def camera() -> CameraModel:
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    P = np.hstack([K, np.zeros((3, 1))])
    return CameraModel(W, H, K, np.zeros(5), np.eye(3), P, "plumb_bob", "cam")


def T_base_cam() -> np.ndarray:
    """A forward-looking camera 1 m above base_link (optical frame: z ahead, y down)."""
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    T[2, 3] = CAM_HEIGHT
    return T


def tf_buffer() -> TransformBuffer:
    tf = TransformBuffer()
    tf.set_transform(transform_from_matrix("base_link", "cam", 0, T_base_cam()), static=True)
    return tf


def pixel(x: float, y: float, z: float) -> tuple[float, float]:
    """A base_link point's pixel, by hand (pinhole, the camera above)."""
    return 320 - 500 * y / x, 240 + 500 * (CAM_HEIGHT - z) / x


def zone(name: str, x: tuple[float, float], y: tuple[float, float], z=(0.0, 0.3)) -> Zone:
    poly = np.array([[x[0], y[0]], [x[1], y[0]], [x[1], y[1]], [x[0], y[1]]], float)
    return Zone(name, "base_link", poly, z, (Rule("person_in_zone"),))


def test_a_zone_in_front_projects_into_the_image_and_one_behind_does_not():
    T_cam_base = np.linalg.inv(T_base_cam())
    ahead = zone_region(zone("bay", (3, 5), (-1, 1)), T_cam_base, camera())
    corners = [pixel(x, y, z) for x in (3, 5) for y in (-1, 1) for z in (0.0, 0.3)]
    (u0, v0), (u1, v1) = np.min(corners, axis=0), np.max(corners, axis=0)
    assert ahead is not None
    assert all(0 <= v <= lim for v, lim in zip(ahead, (W, H, W, H), strict=True))
    np.testing.assert_allclose(ahead, (u0, v0, u1, v1), atol=1.0)  # the prism's corners
    assert zone_region(zone("dock", (-5, -3), (-1, 1)), T_cam_base, camera()) is None
    assert zone_region(zone("side", (0.5, 1), (3, 4)), T_cam_base, camera()) is None
    # Reaching under the camera: the near edge is below the image; the region goes to
    # the image's bottom edge, not to the last corner in view.
    under = zone_region(zone("under", (0.5, 4), (-1, 1)), T_cam_base, camera())
    assert under is not None and under[3] == H and under[1] == math.floor(pixel(4, 0, 0.3)[1])


# -- the findings stage -----------------------------------------------------------------------
def frame_result(stamp_ns: int, image: np.ndarray, boxes=(), scores=(), keep=()) -> FrameResult:
    n = len(boxes)
    det = Detections(
        np.array(boxes, np.float32).reshape(n, 4),
        np.array(scores, np.float32),
        np.zeros(n, np.int64),
        ("person",),
    )
    decisions = [Decision(k, "kept" if k else "no_lidar_support", *[math.nan] * 4) for k in keep]
    return FrameResult(
        stamp_ns, "cam", image, det, decisions, [i for i, k in enumerate(keep) if k], {}, {},
        {}, {}, "base_link", None, {}, "", {},
    )  # fmt: skip


@pytest.fixture
def stage(clip_dir):
    """Findings stages with the hand-set CLIP (or another directory), closed after."""
    made: list[Findings] = []

    def make(model_dir: Path = clip_dir, **overrides) -> Findings:
        values = {"open_vocab.model_dir": str(model_dir), "open_vocab.prompts": PROMPTS}
        made.append(Findings(defaults().with_overrides({**values, **overrides})))
        return made[-1]

    yield make
    for findings in made:
        findings.close()


SPILL = (200, 380, 280, 440)  # x1 y1 x2 y2: a red patch on the floor
BLOT = (400, 100, 480, 160)  # a blue patch
S = 1_000_000_000


def spill_image(colour=RED) -> np.ndarray:
    image = patch(GREY, (H, W))
    image[SPILL[1] : SPILL[3], SPILL[0] : SPILL[2]] = colour
    image[BLOT[1] : BLOT[3], BLOT[0] : BLOT[2]] = BLUE
    return image


def test_low_scoring_boxes_become_findings_with_prompt_score_box_and_source(stage, factory):
    findings = stage()
    # The spill (a doubtful person, rejected), plain floor (doubtful, kept) and the
    # blue patch under a confident box: confident boxes are the detector's business.
    boxes = [SPILL, (40, 300, 120, 360), BLOT]
    result = frame_result(5 * S, spill_image(), boxes, [0.3, 0.2, 0.9], [False, True, True])
    findings.offer(result, tf_buffer(), camera(), ())
    assert findings.wait_idle(30)
    found = findings.poll()
    assert findings.worker.backend.crops == 2  # the confident box was not scored
    assert [f["prompt"] for f in found] == ["red spill"]
    f = found[0]
    assert f["schema"] == FINDINGS_SCHEMA and f["score"] > 0.3
    assert f["box_2d"] == list(SPILL) and f["stamp_ns"] == 5 * S
    assert f["source"] == {"kind": "box", "class": "person", "score": 0.3, "kept": False}
    assert f["camera_frame"] == "cam" and f["cached"] is False
    assert findings.latest == found and findings.poll() == []
    assert [d.level for d in findings.diagnostics()] == [out.OK]
    (msg,) = findings_outputs(found, factory)  # what the pipeline publishes
    assert msg.topic == "findings" and json.loads(msg.msg.data) == f and msg.stamp_ns == 5 * S


def test_boxes_of_classes_outside_the_wanted_list_are_scored_however_confident(stage):
    findings = stage()
    result = frame_result(6 * S, spill_image())
    # The detector called the spill a confident "suitcase", a class detector.classes leaves
    # out: the core passes it on as other_detections, and it is exactly what prompts are for.
    result.other_detections = Detections(
        np.array([SPILL], np.float32), np.array([0.95], np.float32), np.array([1]),
        ("person", "suitcase"),
    )  # fmt: skip
    findings.offer(result, tf_buffer(), camera(), ())
    assert findings.wait_idle(30)
    (found,) = findings.poll()
    assert found["prompt"] == "red spill" and found["box_2d"] == list(SPILL)
    assert found["source"] == {"kind": "box", "class": "suitcase", "score": 0.95, "kept": False}


def test_zone_regions_are_scored_and_zones_out_of_view_are_not(stage):
    image = patch(GREY, (H, W))
    bay = [pixel(x, y, 0.0) for x, y in ((3, -1), (5, -1), (5, 1), (3, 1))]
    cv2.fillPoly(image, [np.round(bay).astype(np.int32)], RED)  # a spill covering the bay
    # The bay ahead, holding the spill; the aisle ahead-left, plain floor; the dock behind.
    zones = [
        zone("bay", (3, 5), (-1, 1)),
        zone("aisle", (3, 5), (2, 3)),
        zone("dock", (-5, -3), (-1, 1)),
        Zone("yard", "map", np.array([[0, 0], [1, 0], [1, 1.0]]), (0, 1), (Rule("object_left"),)),
    ]
    findings = stage()
    findings.offer(frame_result(S, image), tf_buffer(), camera(), zones)
    assert findings.wait_idle(30)
    found = findings.poll()
    assert findings.worker.backend.crops == 2  # bay and aisle: the dock is behind
    assert [(f["prompt"], f["source"]) for f in found] == [
        ("red spill", {"kind": "zone", "zone": "bay"})
    ]
    # tf knows no map frame: the yard is not scored, and diagnostics say why.
    assert list(findings.unreachable) == ["yard"]
    (status,) = findings.diagnostics()
    assert status.level == out.WARN and "yard: cam <- map" in status.message
    off = stage(**{"open_vocab.zones": False})
    off.offer(frame_result(S, image), tf_buffer(), camera(), zones)
    assert off.worker.stats.offered == 0  # no zones, no boxes: nothing to score


def test_scoring_is_rate_limited_in_header_time(stage):
    findings = stage(**{"open_vocab.rate_hz": 1.0})
    tf, cam, image = tf_buffer(), camera(), spill_image()
    for stamp, box in ((10 * S, SPILL), (10 * S + S // 10, (40, 300, 120, 360))):
        findings.offer(frame_result(stamp, image, [box], [0.3], [False]), tf, cam, ())
    assert findings.wait_idle(30)
    assert findings.worker.backend.calls == 1 and findings.worker.stats.skipped_rate == 1
    findings.offer(frame_result(11 * S, image, [BLOT], [0.3], [False]), tf, cam, ())
    assert findings.wait_idle(30)
    assert findings.worker.backend.calls == 2
    assert [f["stamp_ns"] for f in findings.poll()] == [10 * S, 11 * S]


def test_the_same_crop_is_scored_once_and_a_recoloured_one_again(stage):
    findings = stage()
    tf, cam = tf_buffer(), camera()
    for stamp in (S, 2 * S):  # the same spill in two frames a second apart
        findings.offer(frame_result(stamp, spill_image(), [SPILL], [0.3], [False]), tf, cam)
        assert findings.wait_idle(30)
    found = findings.poll()
    assert findings.worker.backend.calls == 1
    assert [(f["prompt"], f["cached"]) for f in found] == [
        ("red spill", False),
        ("red spill", True),
    ]
    # The spill mopped up: a plain crop has the same (flat) dhash as the plain red one,
    # but it is a different crop; it is scored again and is no finding.
    findings.offer(frame_result(3 * S, spill_image(GREY), [SPILL], [0.3], [False]), tf, cam)
    assert findings.wait_idle(30)
    assert findings.worker.backend.calls == 2 and findings.poll() == []
    assert findings.latest == []


def test_prompts_without_a_model_warn_once_and_say_so_in_diagnostics(caplog):
    with caplog.at_level(logging.WARNING, logger="multimodal_perception.findings"):
        findings = Findings(defaults().with_overrides({"open_vocab.prompts": PROMPTS}))
    assert [r.getMessage() for r in caplog.records] == [NO_MODEL]
    (status,) = findings.diagnostics()
    assert status.level == out.WARN and status.message == NO_MODEL
    findings.offer(frame_result(S, spill_image(), [SPILL], [0.3], [False]), tf_buffer(), camera())
    assert findings.poll() == [] and findings.close() == []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="multimodal_perception.findings"):
        quiet = Findings(defaults())
    assert caplog.records == [] and quiet.diagnostics() == [] and quiet.worker is None


def test_a_model_that_fails_on_crops_is_counted_backs_off_and_publishes_nothing(stage, tmp_path):
    # A real misconfiguration, not a mock: the manifest names the image encoder's 3-wide
    # output as its embedding, so every scoring fails against the 4-wide text embeddings.
    d = build_clip_dir(tmp_path / "clip")
    manifest = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**manifest, "image_output": "m"}))
    findings = stage(d)
    findings.offer(frame_result(S, spill_image(), [SPILL], [0.3], [False]), tf_buffer(), camera())
    assert findings.wait_idle(30)
    assert findings.poll() == []
    health = findings.worker.health()
    assert health["state"] == "degraded" and health["failures"] == 1
    (status,) = findings.diagnostics()
    assert status.level == out.WARN and "last error" in status.message
    assert status.values["frames_skipped"] == 1
