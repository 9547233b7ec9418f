"""The zero-shot image-text scorer on real weights: WordNet 3.0 (Debian wordnet-base, which
``make test`` installs) and MobileNetV2 ImageNet from ../shared/models, on real KITTI and
View-of-Delft crops; the text reader (PP-OCRv4 from the rapidocr-onnxruntime wheel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CACHE, DATA, MODELS, in_ci, unavailable
from multimodal_perception.cli import main
from multimodal_perception.perception.runtime import ModelLoadError
from multimodal_perception.perception.wordnet import WordNet, WordNetError, default_root
from multimodal_perception.perception.zero_shot import (
    HIERARCHY,
    SIMILARITY,
    UNKNOWN,
    cut_square,
    load_zero_shot,
)

KITTI = DATA / "kitti_object" / "training"
CLASSIFIER = MODELS / "mobilenet_v2_imagenet"


def need_wordnet() -> WordNet:
    try:
        return WordNet()
    except WordNetError as exc:
        unavailable(str(exc), "scripts/install-system-deps.sh installs wordnet-base")


def need_classifier() -> Path:
    if not CLASSIFIER.is_dir():
        unavailable(f"real models absent ({CLASSIFIER})", "../shared is not beside this clone")
    return MODELS


@pytest.fixture(scope="module")
def wordnet():
    return need_wordnet()


@pytest.fixture(scope="module")
def scorer(wordnet):
    prompts = ["vehicle", "wheeled vehicle", "car", "person", "ladder", "quickly",
               "an open cabinet door", "trash cans", "car.n.01"]  # fmt: skip
    return load_zero_shot(prompts, need_classifier(), wordnet=wordnet)


def test_wordnet_reads_plurals_multi_word_nouns_and_imagenet_ids(wordnet):
    assert wordnet.senses("trash cans")[0].wnid == "n02747177"  # ashcan, trash can, ...
    assert wordnet.senses("Motor Vehicles")[0].name == "motor vehicle"
    assert wordnet.senses("mice")[0].name == "mouse"  # noun.exc
    assert wordnet.senses("buses")[0].wnid == "n02924116"
    assert wordnet.senses("quickly") == []
    assert wordnet.synset(3384352).name == "forklift"  # ImageNet's n03384352
    car, truck, dog = (wordnet.senses(w)[0].offset for w in ("car", "truck", "dog"))
    assert wordnet.wu_palmer(car, car) == 1.0
    assert wordnet.wu_palmer(car, truck) > wordnet.wu_palmer(car, dog) > 0


def test_a_missing_wordnet_names_the_file_and_the_package(tmp_path):
    with pytest.raises(WordNetError, match=r"index\.noun cannot be read.*wordnet-base"):
        WordNet(tmp_path)
    (tmp_path / "index.noun").write_text("garbage\n")
    with pytest.raises(WordNetError, match=r"index\.noun: malformed index line"):
        WordNet(tmp_path)
    assert default_root().is_dir() or not in_ci()


def test_each_text_says_how_it_is_scored(scorer):
    s = scorer.senses
    assert s["vehicle"].method == HIERARCHY and len(s["vehicle"].classes) > 30
    assert s["car"].synset.wnid == "n02958343" and s["car.n.01"].classes == s["car"].classes
    assert s["trash cans"].method == HIERARCHY and s["trash cans"].noun == "trash can"
    assert s["an open cabinet door"].noun == "door"  # the head noun of the phrase
    assert s["ladder"].method == SIMILARITY and "Wu-Palmer" in s["ladder"].reason
    assert s["quickly"].method == UNKNOWN and "no WordNet noun" in s["quickly"].reason
    assert "quickly" in scorer.unknown and "quickly" not in scorer.prompts
    for odd in ("st. mary.x", "car.n.99", "n99999999", "...", ""):
        assert scorer.resolver.resolve(odd).method in (UNKNOWN, HIERARCHY, SIMILARITY)
    assert scorer.resolver.resolve("n99999999").method == UNKNOWN
    # Hierarchy: a car is a vehicle, so "vehicle" holds every class "car" does.
    assert set(s["car"].classes) < set(s["vehicle"].classes)


def test_batched_scores_equal_one_at_a_time_and_hierarchy_sums_probabilities(scorer):
    import cv2

    image = cv2.imread(str(KITTI / "image_2" / "000001.png"))
    boxes = [(599, 156, 630, 189), (388, 182, 424, 203), (0, 0, 120, 120), (500, 0, 620, 100)]
    crops = [cut_square(image, b) for b in boxes]
    together = scorer.score(crops)
    alone = np.concatenate([scorer.score([c]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    probs = scorer.classifier.probabilities(crops)
    car = scorer.prompts.index("car")
    under_car = list(scorer.senses["car"].classes)
    np.testing.assert_allclose(together[:, car], probs[:, under_car].sum(axis=1))
    assert np.all((together >= 0) & (together <= 1))


def test_real_vehicles_and_two_wheelers_stand_out_from_background(scorer):
    """Labelled KITTI/VoD crops against background crops of the same sizes."""
    from multimodal_perception.bagbuild import build_real_bag
    from multimodal_perception.zero_shot_eval import auc, labelled_crops

    root = CACHE / "test_zero_shot"
    shutil.rmtree(root, ignore_errors=True)
    bags = []
    for name in ("kitti_object", "vod"):
        build_real_bag(name, DATA, root / name)
        bags.append(root / name)
    crops, images = labelled_crops(bags)
    scores = scorer.score([scorer.cut(images[c.image_index], c.box) for c in crops])
    groups = np.array([c.group for c in crops])
    background = groups == "background"
    vehicle, wheeled = scorer.prompts.index("vehicle"), scorer.prompts.index("wheeled vehicle")
    assert auc(scores[groups == "vehicle", vehicle], scores[background, vehicle]) >= 0.9
    assert auc(scores[groups == "two-wheeler", wheeled], scores[background, wheeled]) >= 0.85


@pytest.mark.parametrize(
    "crop",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((50, 80, 3), np.uint8),
        np.full((3000, 20, 3), 255, np.uint8),
        np.zeros((40, 40), np.uint8),
    ],
    ids=["empty", "1px", "black", "tall-white", "grey-2d"],
)
def test_any_crop_gets_finite_scores(scorer, crop):
    out = scorer.score([crop])
    assert out.shape == (1, len(scorer.prompts)) and np.isfinite(out).all()


def test_cut_square_keeps_context_and_never_comes_back_empty():
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    assert cut_square(image, (10, 10, 20, 60)).shape == (96, 96, 3)  # 50 px * 1.2 < 96
    assert cut_square(image, (-500, -500, 900, 900)).shape[:2] == (1680, 1680)  # grey around
    assert cut_square(image, (5, 5, 5, 5)).size > 0


def test_a_classifier_with_a_wrong_digest_is_refused_naming_both(tmp_path, wordnet):
    source = need_classifier() / "mobilenet_v2_imagenet"
    shutil.copytree(source, tmp_path / "mobilenet_v2_imagenet")
    model = tmp_path / "mobilenet_v2_imagenet" / "mobilenet_v2_1.0_224_quant.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"quant\.onnx: sha256 [0-9a-f]{64} differs from "
                                             r"the manifest's 5ea31ab4"):  # fmt: skip
        load_zero_shot(["car"], tmp_path, wordnet=wordnet)
    model.unlink()
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_zero_shot(["car"], tmp_path, wordnet=wordnet)


def test_describe_image_scores_boxes_and_says_how(tmp_path, capsys):
    need_wordnet()
    models = need_classifier()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[599, 156, 630, 189], [0, 0, 120, 120]]))
    out = tmp_path / "o" / "scene.json"
    argv = ["describe-image", str(KITTI / "image_2" / "000001.png"), "--boxes", str(boxes),
            "--query", "truck", "--query", "quickly", "--query", "ladder", "--json",
            "--model-dir", str(models), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == doc
    truck, sky = doc["regions"]
    assert truck["scores"]["truck"]["method"] == "hierarchy"
    assert truck["scores"]["truck"]["score"] > sky["scores"]["truck"]["score"]
    assert truck["scores"]["quickly"] == {"score": None, "unknown": "no WordNet noun in 'quickly'"}
    assert truck["scores"]["ladder"]["method"] == "similarity"
    for said in doc["caption"]["evidence"]:
        region = next(r for r in doc["regions"] if r["id"] == said["region"])
        assert region["scores"][said["noun"]]["score"] == said["score"]


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ("[[0, 0, 5000, 10]]", "outside the 1224x370 image"),
        ("[", "not JSON"),
        ("[]", "non-empty JSON list"),
        ('[[0, 0, "a", 3]]', "is not [x0, y0, x1, y1]"),
        ("[[10, 10, 5, 20]]", "has no area"),
    ],
)
def test_describe_image_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, capsys, boxes, message
):
    path = tmp_path / "boxes.json"
    path.write_text(boxes)
    out = tmp_path / "scene.json"
    image = KITTI / "image_2" / "000000.png"
    if not image.exists():
        pytest.skip(f"real data {image} is absent")
    argv = ["describe-image", str(image), "--boxes", str(path), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_describe_image_refuses_what_is_not_an_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    assert main(["describe-image", str(bad)]) == 2
    assert "not an image OpenCV can read" in capsys.readouterr().err


def test_text_reading_reads_printed_text_and_any_crop():
    import cv2

    from multimodal_perception.perception.text_reading import TextReader, character_accuracy

    reader = TextReader()
    image = np.full((200, 700, 3), 235, np.uint8)
    cv2.putText(image, "EXIT 12 NORTH", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (20, 20, 20), 4)
    (lines,) = reader.read(image)
    text = " ".join(t.text for t in lines)
    assert character_accuracy(text, "EXIT 12 NORTH") >= 0.9, text
    assert all(0 <= t.box_2d[0] < t.box_2d[2] <= 700 for t in lines)
    odd = [(0, 0, 0, 0), (0, 0, 1, 1), (-50, -50, 5000, 5000), (690, 190, 700, 200)]
    found = reader.read(image, odd)
    assert found[0] == [] and found[1] == [] and found[3] == []
    assert character_accuracy(" ".join(t.text for t in found[2]), "EXIT 12 NORTH") >= 0.9
    assert reader.read(np.zeros((3, 3, 3), np.uint8)) == [[]]
