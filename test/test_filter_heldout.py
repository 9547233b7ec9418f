"""The consistency filter on real labelled frames, calibration and report sets disjoint.

Calibration: KITTI object 000000-000002 + View-of-Delft frame 01047; report: VoD frame
00549 (with radar), never seen by the fit. Every detector box of YOLOX-nano, single pass
(the default) and tiled, with Cityscapes DeepLab, is judged by the filter's own rule; the
thresholds in the DeepLab manifest (models/deeplab_mnedgetpu_cityscapes.yaml, used where
the filter.threshold parameters are -1) are what ``calibrate.fit`` (most false positives
removed at <= 2 points recall loss per class; classes with >= 3 true boxes) gives on the
calibration frames, and are scored per class on the report frame. Needs ../shared."""

from __future__ import annotations

import shutil

import pytest

from conftest import CACHE, DATA, MODELS, need_data
from multimodal_perception.bagbuild import build_real_bag
from multimodal_perception.calibrate import Samples, collect, fit, format_report, report
from multimodal_perception.config import load_parameters
from multimodal_perception.datasets.vod import vod_frames

pytestmark = pytest.mark.real_data

CALIBRATION_VOD = "01047"
REPORT_VOD = "00549"
MODES = {"single pass": {}, "tiled": {"detector.tiling": True}}


def _pool(parts: list[Samples]) -> Samples:
    out = Samples()
    for s in parts:
        out.boxes += s.boxes
        out.frames += s.frames
        for cls, n in s.labelled.items():
            out.labelled[cls] += n
    return out


@pytest.fixture(scope="module")
def evidence():
    need_data()
    if not (MODELS / "yolox_nano_416").is_dir():
        pytest.skip(f"real models absent ({MODELS})")
    ids = [f.frame_id for f in vod_frames(DATA / "view_of_delft")]
    root = CACHE / "test_filter_heldout"
    shutil.rmtree(root, ignore_errors=True)
    build_real_bag("kitti_object", DATA, root / "kitti_object")
    build_real_bag("vod", DATA, root / "vod_cal", frames={ids.index(CALIBRATION_VOD)})
    build_real_bag("vod", DATA, root / "vod_report", frames={ids.index(REPORT_VOD)})
    calibration, held_out = {}, {}
    for mode, overrides in MODES.items():
        params = load_parameters().with_overrides({"models.directory": str(MODELS), **overrides})
        calibration[mode] = collect([root / "kitti_object", root / "vod_cal"], params)
        held_out[mode] = collect([root / "vod_report"], params)
    return calibration["single pass"].config, calibration, held_out


def test_calibration_and_report_frames_are_disjoint(evidence):
    _, calibration, held_out = evidence
    for mode in MODES:
        assert calibration[mode].frames == 4 and held_out[mode].frames == 1


def test_configured_thresholds_are_the_fit_on_the_calibration_frames(evidence):
    config, calibration, _ = evidence
    fitted = fit(_pool(list(calibration.values())), config)
    print(f"fitted: {fitted}")
    assert fitted.keys() >= {"person", "car"}
    for cls, value in fitted.items():
        assert config.threshold(cls) == pytest.approx(value), cls


@pytest.mark.parametrize("mode", MODES)
def test_the_filter_cuts_false_positives_on_the_held_out_frame(evidence, mode):
    """Goal of the accuracy issue: FP cut >= 30 % at <= 2 points recall loss, on a frame
    not used for calibration. Measured: single pass FP 4 -> 2, TP 1 -> 1; tiled FP
    13 -> 7, TP 3 -> 3 (person 6 -> 2, motorcycle 2 -> 1, bus 1 -> 0)."""
    config, _, held_out = evidence
    rows = report(held_out[mode], {}, config)  # {}: the configured thresholds
    print(format_report(f"VoD {REPORT_VOD}, {mode}, configured thresholds:", rows))
    total = rows["all"]
    assert total["fp_before"] >= 4  # the frame has false boxes to remove
    assert total["fp_cut"] >= 0.30
    assert total["recall_loss"] <= 0.02
