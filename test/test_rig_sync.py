"""A camera rig: every camera anchors its own frames, shared partners are accounted once,
and one tracker serves all cameras (out-of-order frames, objects out of a camera's view)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from multimodal_perception.fusion.rig_sync import RigSynchronizer
from multimodal_perception.fusion.sync import Outcome, SensorWindow, SyncConfig, Synchronizer
from multimodal_perception.fusion.tracking import Measurement, Tracker, TrackerConfig

MS = 1_000_000
CONFIG = SyncConfig(
    anchor="camera",
    windows={"lidar": SensorWindow(0, 50 * MS), "radar": SensorWindow(0, 38 * MS)},
    timeout_ns=150 * MS,
)
# Four cameras triggered 25 ms apart (as a rig synchronised to a spinning lidar is).
OFFSETS = {"front": 0, "left": 25, "rear": 50, "right": 75}


def rig_stream(seconds: float = 3.0, seed: int = 0) -> list[tuple[str, str, int]]:
    """(sensor, topic, stamp) in arrival order: cameras at 10 Hz with their offsets and
    jitter, lidar 10 Hz, radar 13 Hz; a few messages lost; each arrives after its stamp."""
    rng = np.random.default_rng(seed)
    events = []
    for name, offset in OFFSETS.items():
        for k in range(int(seconds * 10)):
            stamp = (k * 100 + offset) * MS + int(rng.integers(-2, 3)) * MS
            events.append(("camera", f"/cameras/{name}/image_raw", stamp))
    events += [("lidar", "/lidar/points", (k * 100 + 10) * MS) for k in range(int(seconds * 10))]
    events += [
        ("radar", "/radar/points", round(k * 1e3 / 13) * MS) for k in range(int(seconds * 13))
    ]
    keep = rng.random(len(events)) > 0.05
    events = [e for e, k in zip(events, keep, strict=True) if k]
    # arrival: stamp + a transport delay of 5-40 ms
    arrival = [e[2] + int(rng.integers(5, 40)) * MS for e in events]
    return [e for _, e in sorted(zip(arrival, events, strict=True), key=lambda p: p[0])]


def run_rig(events):
    camera_of = {f"/cameras/{n}/image_raw": n for n in OFFSETS}
    rig = RigSynchronizer(CONFIG, camera_of)
    frames = []
    for sensor, topic, stamp in events:
        frames += rig.push(sensor, stamp, (topic, stamp), key=topic)
    frames += rig.flush()
    return rig, frames


def partner_stamps(frame) -> dict[str, int | None]:
    return {
        s: (frame.partners[s].stamp_ns if s in frame.partners else None) for s in CONFIG.windows
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_camera_gets_the_frames_a_synchroniser_of_its_own_would_give(seed):
    events = rig_stream(seed=seed)
    _, frames = run_rig(events)
    for name in OFFSETS:
        topic = f"/cameras/{name}/image_raw"
        alone = Synchronizer(CONFIG)
        expected = []
        for sensor, t, stamp in events:
            if sensor != "camera" or t == topic:
                expected += alone.push(sensor, stamp, (t, stamp), key=t)
        expected += alone.flush()
        mine = [f for f in frames if f.anchor[0] == topic]
        assert [f.stamp_ns for f in mine] == [f.stamp_ns for f in expected]
        assert [partner_stamps(f) for f in mine] == [partner_stamps(f) for f in expected]
    # The rear camera (50 ms after the front) gets a different lidar sweep than the front.
    front = {f.stamp_ns // (100 * MS): partner_stamps(f) for f in frames if "front" in f.anchor[0]}
    rear = {f.stamp_ns // (100 * MS): partner_stamps(f) for f in frames if "rear" in f.anchor[0]}
    assert any(front[k]["radar"] != rear[k]["radar"] for k in front.keys() & rear.keys())


def test_every_message_is_accounted_once_and_shared_partners_count_as_used_once():
    events = rig_stream(seed=3)
    rig, frames = run_rig(events)
    received = Counter(topic for _, topic, _ in events)
    counts = rig.key_counts
    for topic, n in received.items():
        assert sum(counts[topic].values()) == n, (topic, counts[topic])
    assert not rig.pending_by_key()
    # Every lidar sweep any camera used is "used", exactly once.
    used_lidar = {f.partners["lidar"].stamp_ns for f in frames if "lidar" in f.partners}
    assert counts["/lidar/points"][Outcome.USED] == len(used_lidar)
    assert sum(counts[f"/cameras/{n}/image_raw"][Outcome.USED] for n in OFFSETS) == len(frames)
    # Frames leave in stamp order within each push: the output is sorted per camera.
    for name in OFFSETS:
        stamps = [f.stamp_ns for f in frames if name in f.anchor[0]]
        assert stamps == sorted(stamps)


def test_pending_partners_are_reported_until_every_camera_decided():
    rig = RigSynchronizer(
        CONFIG, {"/cameras/front/image_raw": "front", "/cameras/rear/image_raw": "rear"}
    )
    rig.push("camera", 100 * MS, ("/cameras/front/image_raw", 1), key="/cameras/front/image_raw")
    rig.push("lidar", 100 * MS, ("/lidar/points", 2), key="/lidar/points")
    # front emitted its frame with this sweep; rear may still anchor a frame near it
    assert rig.pending_by_key()["/lidar/points"] == 1
    rig.flush()
    assert rig.key_counts["/lidar/points"] == Counter({Outcome.USED: 1})
    assert not rig.pending_by_key()


def test_a_rig_needs_the_camera_as_anchor():
    with pytest.raises(ValueError, match=r"sync\.anchor 'camera'"):
        RigSynchronizer(
            SyncConfig(anchor="lidar", windows={"camera": SensorWindow(0, 50 * MS)}),
            {"/a": "a"},
        )


def _meas(x: float, y: float) -> Measurement:
    return Measurement(np.array([x, y]), "car", 0.9)


def test_a_frame_from_another_camera_does_not_count_a_miss_for_tracks_it_cannot_see():
    tracker = Tracker(TrackerConfig(confirm_hits=3, max_missed_s=1.0))
    # Which tracks each camera sees, a bool per track: the left camera, the right camera.
    left_only = (
        lambda tracks: np.array([t.x[1] > 0 for t in tracks], dtype=bool),
        lambda tracks: np.array([t.x[1] <= 0 for t in tracks], dtype=bool),
    )
    t = 0
    for _ in range(3):  # a car on the left, seen by the left camera, confirmed
        tracker.step(t, [_meas(0.0, 5.0)], left_only[0])
        t += 50 * MS
        tracker.step(t, [], left_only[1])  # the right camera sees nothing: no miss
        t += 50 * MS
    (track,) = tracker.tracks
    assert track.confirmed and track.missed == 0
    # A tentative track born in one camera survives the other camera's frame.
    tracker.step(t, [_meas(0.0, -8.0)], left_only[1])
    tracker.step(t + 25 * MS, [], left_only[0])
    assert len(tracker.tracks) == 2
    # ... but not a frame of the camera that should have seen it again.
    tracker.step(t + 50 * MS, [], left_only[1])
    assert len(tracker.tracks) == 1
    # Without the predicate (one camera) every unmatched track misses, as before.
    blind = Tracker(TrackerConfig(confirm_hits=3))
    blind.step(0, [_meas(0.0, 5.0)])
    blind.step(50 * MS, [])
    assert blind.tracks == []


def test_frames_finishing_out_of_stamp_order_keep_the_track_and_its_motion():
    tracker = Tracker(TrackerConfig(confirm_hits=1))
    v = 10.0  # m/s along x
    order = [0, 100, 50, 200, 150, 300, 250]  # ms: the 25-ms-later camera finishes late
    for ms in order:
        tracker.step(ms * MS, [_meas(v * ms / 1e3, 0.0)])
    assert tracker.resets == 0
    (track,) = tracker.tracks
    assert track.track_id == 1 and track.hits == len(order)
    assert abs(track.x[2] - v) < 1.0 and abs(track.x[0] - v * 0.25) < 0.3
    # A step back beyond max_out_of_order_s is a time jump: the tracker resets.
    tracker.step(-1_000 * MS, [_meas(0.0, 0.0)])
    assert tracker.resets == 1
