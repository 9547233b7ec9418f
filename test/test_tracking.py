"""Tracking: ids through crossings, radar radial velocity, CLEAR-MOT on held-out synthetic
scenarios, and the KITTI raw lead car."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from conftest import CACHE, DATA, MODELS, need_data
from multimodal_perception.bagbuild import build_real_bag
from multimodal_perception.fusion.tracking import Measurement, Tracker
from multimodal_perception.replay import replay
from multimodal_perception.sim.bag import SyntheticConfig, write_synthetic_bag
from multimodal_perception.tracking_eval import evaluate_tracking


def test_tracker_keeps_ids_through_a_crossing_and_estimates_velocity():
    tracker = Tracker()
    ids_a, ids_b = set(), set()
    for k in range(40):
        t = k * 100_000_000
        # Two pedestrians crossing each other's paths at 1.4 m/s, 1 m apart at closest.
        a = np.array([10.0 + 0.14 * k - 2.8, -0.5])
        b = np.array([10.0 - 0.14 * k + 2.8, 0.5])
        tracker.step(t, [Measurement(a, "person", 0.9), Measurement(b, "person", 0.9)])
        ta, tb = tracker.assignment
        ids_a.add(ta.track_id)
        ids_b.add(tb.track_id)
    assert len(ids_a) == len(ids_b) == 1 and ids_a != ids_b
    np.testing.assert_allclose(ta.velocity, [1.4, 0.0], atol=0.1)
    np.testing.assert_allclose(tb.velocity, [-1.4, 0.0], atol=0.1)


def test_a_track_unseen_longer_than_it_lives_gives_no_new_object_its_id():
    """A gap in the stream (a clock step ahead, a camera that stopped) longer than
    tracking.max_missed_s: a car parked where the old track was is a new track (its
    covariance after the gap would gate it in, and it would carry the old id)."""
    tracker = Tracker()
    car = np.array([12.0, 3.0])
    for k in range(5):
        tracker.step(k * 100_000_000, [Measurement(car, "car", 0.9)])
    (before,) = tracker.assignment
    gap_ns = int((tracker.config.max_missed_s + 29.0) * 1e9)
    tracker.step(400_000_000 + gap_ns, [Measurement(car, "car", 0.9)])
    (after,) = tracker.assignment
    assert after.track_id != before.track_id and after.hits == 1
    # Within the lifetime the same object keeps its id.
    tracker.step(500_000_000 + gap_ns, [Measurement(car, "car", 0.9)])
    assert tracker.assignment[0].track_id == after.track_id


def test_radar_radial_velocity_speeds_up_velocity_convergence():
    with_radar, without = Tracker(), Tracker()
    for k in range(4):
        t = k * 100_000_000
        xy = np.array([20.0 - 1.0 * k, 0.0])  # approaching at 10 m/s
        with_radar.step(
            t, [Measurement(xy, "car", 0.9, radial_velocity=-10.0, los=np.array([1.0, 0.0]))]
        )
        without.step(t, [Measurement(xy, "car", 0.9)])
    assert abs(with_radar.tracks[0].velocity[0] + 10.0) < abs(without.tracks[0].velocity[0] + 10)
    assert abs(with_radar.tracks[0].velocity[0] + 10.0) < 0.5


# A scenario seed used for nothing else: these tests used to run seed 21, which the tracker
# was tuned against and the tiny models were trained on (seeds 1-40); the demo is seed 0.
TRACKING_SEED = 301
# CLEAR-MOT MOTA measured 2026-12-02 with the tiny models (urban / highway / indoor):
# seed 301: 0.736 / 0.741 / 0.301; seeds 302, 303: 0.756 / 0.752 / 0.191 and
# 0.765 / 0.803 / 0.222 (seed 21, tuned on: 0.739 / 0.729 / 0.370). Indoor scores low: the
# racks give the tiny detector false people and forklifts. Bound: seed 301 minus 0.1.
MOTA_MIN = {"urban_crossing": 0.63, "highway_following": 0.64, "indoor_aisle": 0.20}
# Median velocity error of radar-seen tracks, all scenarios: 0.080 m/s on seed 301 (0.087,
# 0.091 on seeds 302, 303). Bound: measured + 0.12.
VELOCITY_ERROR_MAX = 0.2


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_tracking")
    runs = {}
    for scenario, seconds in (
        ("urban_crossing", 10.0),
        ("highway_following", 6.0),
        ("indoor_aisle", 6.0),
    ):
        bag = root / f"{scenario}_bag"
        write_synthetic_bag(bag, SyntheticConfig(scenario, seconds, seed=TRACKING_SEED))
        runs[scenario] = replay([bag], root / scenario, pictures=0, progress=False)
    return runs


def test_tracking_on_synthetic_scenarios(synthetic_runs):
    radar_errors = []
    for scenario, result in synthetic_runs.items():
        scores = evaluate_tracking(result.out_dir / "output.mcap")
        print(scores.format(scenario))
        radar_errors += scores.velocity_errors
        assert scores.mota >= MOTA_MIN[scenario], (scenario, scores.mota)
    print(f"velocity error with radar, all scenarios: median {np.median(radar_errors):.2f} m/s")
    assert np.median(radar_errors) <= VELOCITY_ERROR_MAX


def test_crossing_pedestrians_keep_their_ids(synthetic_runs):
    # urban_crossing: pedestrians 8 and 9 pass each other on the crossing around t = 9.7 s.
    # Scored from t = 7 s, once pedestrian 9 is back from behind the crossing truck (a
    # longer occlusion than tracking.max_missed_s ends a track by design).
    scores = evaluate_tracking(
        synthetic_runs["urban_crossing"].out_dir / "output.mcap", min_pixels=100, t_min=7.0
    )
    for gt_id in (8, 9):
        ids = scores.ids_per_gt.get(gt_id, [])
        print(f"pedestrian {gt_id}: track ids {ids}")
        assert len(ids) == 1, f"pedestrian {gt_id} changed track id: {ids}"


@pytest.mark.real_data
def test_kitti_raw_lead_car_keeps_one_id():
    need_data()
    if not (MODELS / "yolox_nano_416").is_dir():
        pytest.skip(f"real models absent ({MODELS})")
    root = CACHE / "test_tracking_kitti_raw"
    shutil.rmtree(root, ignore_errors=True)
    build_real_bag("kitti_raw", DATA, root / "bag")
    result = replay(
        [root / "bag"],
        root / "out",
        pictures=0,
        progress=False,
        overrides={"models.directory": str(MODELS)},
    )
    from multimodal_perception.ros_pkg.bag_io import iter_bag

    ids = []
    for rec in iter_bag(result.out_dir / "output.mcap", ["/multimodal_perception/scene"]):
        scene = json.loads(rec.msg.data)
        lead = [
            o
            for o in scene["objects"]
            if o["class"] in ("car", "truck")
            and o["center"]
            and abs(o["bearing_deg"]) < 10
            and o["range_m"] < 15
            and o["confirmed"]
        ]
        if lead:
            ids.append(min(lead, key=lambda o: o["range_m"])["track_id"])
    switches = sum(1 for a, b in itertools.pairwise(ids) if a != b)
    print(
        f"KITTI raw: lead car tracked in {len(ids)} of 40 frames, ids {sorted(set(ids))}, "
        f"{switches} id switches"
    )
    assert len(ids) >= 25 and len(set(ids)) == 1 and switches == 0
