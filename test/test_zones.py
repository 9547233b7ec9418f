"""Inspection zones: polygon membership, the four rules, debouncing (one situation, one
event), free aisle width, and precise errors for bad zone files."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_perception.fusion.zones import (
    Rule,
    TrackedObject,
    Zone,
    ZoneError,
    ZoneMonitor,
    free_width,
    load_zones,
)

NS = 1_000_000_000
AISLE = np.array([[0.0, -1.6], [20.0, -1.6], [20.0, 1.6], [0.0, 1.6]])


def zone(*rules: Rule, debounce_s: float = 0.5) -> Zone:
    return Zone("aisle", "odom", AISLE, (-1.0, 3.0), rules, debounce_s)


def obj(track: int, cls: str, x: float, y: float = 0.0, speed: float = 0.0, size=(0.6, 0.6, 1.7)):
    return TrackedObject(track, cls, np.array([x, y, 0.8]), np.array(size, float), 0.0, speed)


def run(monitor: ZoneMonitor, frames: list[list[TrackedObject]], hz: float = 10.0) -> list[dict]:
    events = []
    for k, objects in enumerate(frames):
        events += monitor.step(int(k * NS / hz), {"aisle": objects})
    return events


def test_polygon_membership_with_height_band():
    z = zone(Rule("person_in_zone"))
    pts = np.array([[5, 0, 1], [25, 0, 1], [5, 2, 1], [5, 0, 5], [0.1, -1.5, 0]], float)
    assert z.contains(pts).tolist() == [True, False, False, False, True]


def test_a_person_entering_is_one_event_after_the_debounce_and_ends_once():
    monitor = ZoneMonitor([zone(Rule("person_in_zone"))])
    outside, inside = [obj(7, "person", 25.0)], [obj(7, "person", 5.0)]
    # 1 s outside, 0.3 s inside (a flicker: no event), 1 s outside, 2 s inside, 1 s outside.
    frames = [outside] * 10 + [inside] * 3 + [outside] * 10 + [inside] * 20 + [outside] * 10
    events = run(monitor, frames)
    assert [e["state"] for e in events] == ["started", "ended"]
    start, end = events
    assert start["start_ns"] == 23 * NS // 10  # stamped when it began, not when confirmed
    assert end["end_ns"] == 43 * NS // 10
    assert start["event_id"] == end["event_id"] and start["track_ids"] == [7]
    assert start["schema"] == "mmp.events/1" and start["evidence"]["track_id"] == 7


def test_vehicles_and_persons_are_told_apart():
    monitor = ZoneMonitor([zone(Rule("vehicle_in_zone", "error", ("truck",)))])
    events = run(monitor, [[obj(1, "person", 5.0)]] * 10 + [[obj(2, "truck", 5.0)]] * 10)
    assert [(e["state"], e["track_ids"], e["level"]) for e in events] == [("started", [2], "error")]


def test_an_object_left_standing_longer_than_allowed():
    monitor = ZoneMonitor([zone(Rule("object_left", after_s=2.0, max_speed_mps=0.2))])
    moving = [[obj(3, "truck", 5.0 + 0.1 * k, speed=1.0)] for k in range(10)]
    parked = [[obj(3, "truck", 6.0, speed=0.05)]] * 40
    events = run(monitor, moving + parked)
    assert len(events) == 1 and events[0]["rule"] == "object_left"
    # parked from frame 10 (1.0 s): left after 2 s -> 3.0 s, then the 0.5 s debounce
    assert events[0]["start_ns"] == 30 * NS // 10
    # A person standing still is not an object left behind.
    people = ZoneMonitor([zone(Rule("object_left", after_s=1.0))])
    assert run(people, [[obj(4, "person", 6.0)]] * 40) == []


def test_a_detection_missing_for_a_frame_does_not_restart_the_object_left_timer():
    # The detector misses a parked forklift in one frame of ten: the inspection sees it
    # absent then. Gaps shorter than the debounce are one situation: the event, once on,
    # stays on (it used to end at the first gap while on: the still timer restarted).
    monitor = ZoneMonitor([zone(Rule("object_left", after_s=2.0, max_speed_mps=0.2))])
    frames = [[] if k % 10 == 9 else [obj(3, "truck", 6.0, speed=0.05)] for k in range(40)]
    events = run(monitor, frames)
    assert [(e["state"], e["start_ns"]) for e in events] == [("started", 20 * NS // 10)]
    # Gone for longer than occlusion_s: back, it starts standing afresh (its old timer
    # used to be kept, and forgotten tracks' timers kept for ever).
    monitor = ZoneMonitor([zone(Rule("object_left", after_s=2.0, occlusion_s=0.5))])
    parked = [obj(3, "truck", 6.0, speed=0.05)]
    assert run(monitor, [parked] * 15 + [[]] * 6 + [parked] * 15) == []


def test_a_parked_object_with_a_noisy_tracked_speed_is_left_and_one_driving_off_is_not():
    rule = Rule("object_left", after_s=2.0, max_speed_mps=0.2, still_radius_m=1.0)
    # Parked at x = 6 m: its estimated box shifts, so the centre jitters by 0.4 m and the
    # tracked speed jumps to 0.9 m/s every other frame (it used to restart the timer).
    rng = np.random.default_rng(0)
    noisy = [
        [obj(3, "truck", 6.0 + rng.uniform(-0.2, 0.2), speed=0.9 if k % 2 else 0.1)]
        for k in range(40)
    ]
    events = run(ZoneMonitor([zone(rule)]), noisy)
    assert [(e["state"], e["start_ns"]) for e in events] == [("started", 20 * NS // 10)]
    # Slows down for a moment, then drives on: 1.5 m/s takes it past the radius in 0.7 s.
    stop_and_go = [[obj(3, "truck", 6.0, speed=0.1)]] * 5 + [
        [obj(3, "truck", 6.0 + 0.15 * k, speed=1.5)] for k in range(1, 35)
    ]
    assert run(ZoneMonitor([zone(rule)]), stop_and_go) == []


def test_a_parked_object_hidden_by_someone_walking_past_is_still_left():
    rule = Rule("object_left", after_s=2.0, occlusion_s=2.0)
    parked = [obj(3, "truck", 6.0, speed=0.05)]
    # Parked 1.5 s, hidden 1.5 s (a person between it and the camera), seen again: the
    # object was there all along and is left 2 s after it stopped.
    events = run(ZoneMonitor([zone(rule)]), [parked] * 15 + [[]] * 15 + [parked] * 10)
    assert [(e["state"], e["start_ns"]) for e in events] == [("started", 20 * NS // 10)]
    # An event in progress does not end while it is hidden for 1.5 s ...
    events = run(ZoneMonitor([zone(rule)]), [parked] * 30 + [[]] * 15 + [parked] * 10)
    assert [e["state"] for e in events] == ["started"]
    # ... and ends once it has been gone for longer than occlusion_s (and the debounce).
    events = run(ZoneMonitor([zone(rule)]), [parked] * 30 + [[]] * 30)
    assert [(e["state"], e.get("end_ns")) for e in events] == [
        ("started", None),
        ("ended", 50 * NS // 10),
    ]


def test_free_width_of_an_aisle():
    z = zone(Rule("aisle_blocked", min_free_width_m=1.0))
    pallet = obj(1, "truck", 5.0, y=-1.0, size=(1.2, 1.2, 1.0))  # y in [-1.6, -0.4]
    cart = obj(2, "truck", 5.3, y=0.9, size=(1.2, 1.2, 1.0))  # y in [0.3, 1.5]
    far = obj(3, "truck", 15.0, y=0.0, size=(1.0, 1.0, 1.0))
    assert free_width(z, "x", [pallet]) == pytest.approx(2.0)
    assert free_width(z, "x", [pallet, cart]) == pytest.approx(0.8)  # 3.2 - 1.2 - 1.2
    assert free_width(z, "x", [pallet, far]) == pytest.approx(2.0)  # not side by side
    monitor = ZoneMonitor([z])
    events = run(monitor, [[pallet]] * 10 + [[pallet, cart]] * 10 + [[pallet]] * 10)
    assert [e["state"] for e in events] == ["started", "ended"]
    assert events[0]["track_ids"] == [1, 2]


def test_zone_files_are_validated_with_precise_errors(tmp_path):
    good = tmp_path / "zones.yaml"
    good.write_text(
        "zones:\n- name: aisle\n  frame: map\n  polygon: [[0, -1.6], [20, -1.6], [20, 1.6]]\n"
        "  rules: [{type: person_in_zone}, {type: aisle_blocked, min_free_width_m: 1.2}]\n"
    )
    (z,) = load_zones(good)
    assert z.frame == "map" and z.rules[1].min_free_width_m == 1.2
    for body, needle in [
        ("zones: 3", "'zones' list"),
        ("zones:\n- {name: a, polygon: [[0, 0], [1, 0]], rules: [{type: person_in_zone}]}", ">= 3"),
        ("zones:\n- {name: a, polygon: [[0,0],[1,0],[1,1]], rules: [{type: fly}]}", "rule type"),
        ("zones:\n- {name: a, polygon: [[0,0],[1,0],[1,1]], rules: []}", "no rules"),
        ("zones: [", "cannot read zones"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(ZoneError, match=needle):
            load_zones(bad)


def test_replay_with_zones_publishes_events_and_names_unreachable_frames(tmp_path):
    import json

    from conftest import REPO
    from multimodal_perception.replay import replay
    from multimodal_perception.ros_pkg.bag_io import iter_bag

    zones = tmp_path / "zones.yaml"
    zones.write_text(
        "zones:\n"
        "- {name: ahead, frame: base_link, polygon: [[3, -12], [45, -12], [45, 12], [3, 12]],\n"
        "   rules: [{type: person_in_zone}, {type: vehicle_in_zone, classes: [car, bus, truck]}]}\n"
        "- {name: lost, frame: nowhere, polygon: [[0, 0], [1, 0], [1, 1]],\n"
        "   rules: [{type: person_in_zone}]}\n"
    )
    result = replay(
        [REPO / "bags" / "urban_crossing_5s"], tmp_path / "out", pictures=0, progress=False,
        overrides={"inspection.zones_file": str(zones)},
    )  # fmt: skip
    assert result.report["inputs_balanced"] and result.report["frames"] == 50
    out = tmp_path / "out" / "output.mcap"
    events = [json.loads(r.msg.data) for r in iter_bag(out, ["/multimodal_perception/events"])]
    started = {(e["zone"], e["rule"]) for e in events if e["state"] == "started"}
    assert started == {("ahead", "person_in_zone"), ("ahead", "vehicle_in_zone")}
    assert all(
        e["track_ids"] and e["evidence"]["box_2d"] for e in events if e["state"] == "started"
    )
    scenes = [json.loads(r.msg.data) for r in iter_bag(out, ["/multimodal_perception/scene"])]
    assert any(s["events"] for s in scenes)
    diags = [s for r in iter_bag(out, ["/diagnostics"]) for s in r.msg.status]
    zone_status = [s for s in diags if s.name.endswith("inspection zones")]
    assert zone_status and "nowhere" in zone_status[-1].message


def test_the_shipped_inspection_profile_and_zones_load(tmp_path):
    from conftest import REPO
    from multimodal_perception.config import load_parameters

    zones = load_zones(REPO / "config" / "zones_example.yaml")
    assert {z.name for z in zones} == {"main_aisle", "cross_aisle"}
    params = load_parameters(REPO / "config" / "inspection.yaml")
    assert params["frames.fixed"] == "odom" and "person" in params["detector.classes"]


def test_the_monitor_forgets_tracks_whose_situations_are_over():
    monitor = ZoneMonitor([zone(Rule("object_left", after_s=0.5, occlusion_s=0.5))])
    for t in range(200):  # 200 objects pass through, each parked briefly, then gone
        frames = [[obj(t, "truck", 5.0)]] * 12 + [[]] * 14
        run(monitor, frames)
    assert len(monitor._conditions) <= 1 and not monitor._slow_since
