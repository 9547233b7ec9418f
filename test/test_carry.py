"""Objects in an older lidar sweep (sync policy latest): the tracker takes a position seen
``age`` ago as such, and a moving track's points are carried to the camera stamp."""

from __future__ import annotations

import numpy as np

from multimodal_perception.fusion.carry import carry_points, moving_regions
from multimodal_perception.fusion.tracking import Measurement, Tracker, TrackerConfig

NS = 1_000_000_000


def _track_car(age_s: float, declared_s: float | None = None) -> Tracker:
    """A car at 10 m/s along x, measured every 0.1 s at where it was ``age_s`` before, the
    measurement saying it is ``declared_s`` old (default: its true age)."""
    declared = age_s if declared_s is None else declared_s
    tracker = Tracker(TrackerConfig(confirm_hits=1))
    for k in range(30):
        t = k * 0.1
        seen = np.array([10.0 * (t - age_s), 5.0])
        tracker.step(round(t * NS), [Measurement(seen, "car", 0.9, age_s=declared)])
    return tracker


def test_a_delayed_measurement_places_the_track_at_the_step_stamp():
    (track,) = _track_car(0.08).tracks
    assert abs(track.x[0] - 10.0 * 2.9) < 0.05  # where the car is at the stamp, not 0.8 m behind
    assert abs(track.x[2] - 10.0) < 0.1
    # the same measurements taken as current leave the track 0.8 m behind the car
    (naive,) = _track_car(0.08, declared_s=0.0).tracks
    assert abs(naive.x[0] - (10.0 * 2.9 - 0.8)) < 0.05


def test_a_moving_track_carries_its_points_and_leaves_the_rest():
    (track,) = _track_car(0.0).tracks  # at x = 29 m, 10 m/s, stamp 2.9 s
    sweep_ns, age_s = round(2.92 * NS), 0.08  # camera at 3.0 s, sweep 80 ms older
    regions = moving_regions([track], round(2.9 * NS), sweep_ns, age_s, np.eye(4))
    (region,) = regions
    np.testing.assert_allclose(region.then_xy, [29.2, 5.0], atol=1e-3)
    np.testing.assert_allclose(region.shift, [0.8, 0.0, 0.0], atol=1e-3)
    car = np.array([[29.2 + dx, 5.0 + dy, 0.8] for dx in (-2.0, 0.0, 2.0) for dy in (-0.8, 0.8)])
    wall = np.array([[29.0, 12.0, 1.0], [10.0, 5.0, 1.0]])
    moved = carry_points(np.vstack([car, wall]), regions)
    np.testing.assert_allclose(moved[: len(car)], car + region.shift)
    np.testing.assert_array_equal(moved[len(car) :], wall)
    # a standing track carries nothing
    track.x[2:] = 0.0
    assert moving_regions([track], round(2.9 * NS), sweep_ns, age_s, np.eye(4)) == []
