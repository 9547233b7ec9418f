"""Live fault drills: a player that publishes the shipped bag over DDS with /clock, with
one fault of a robot built in, and what the node made of it.

A drill is a list of steps at wall-clock offsets (1x): publish a message (CDR), bring a
sensor's publisher down or up again (a driver restart: a new writer DDS has to
discover), swap it for one of incompatible QoS, or mark an instant (the fault began, the
sensor is back). ``run_drill`` starts the node in its own process, plays the drill while
this process listens to ``scene`` and ``/diagnostics``, stops the node with SIGINT and
returns what the table needs: time from the fault to the first status naming it, time
from the sensor's return to the first frame that uses it again, messages accounted of
those received, and track ids used again.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.player import clock_msg, message_class
from multimodal_perception.ros_pkg.stamps import shift_stamps
from multimodal_perception.ros_pkg.typestore import get_project_typestore

TYPESTORE = get_project_typestore()
LIDAR, CAMERA = "/lidar/points", "/camera/image_raw/compressed"
NS = "/perception"


@dataclasses.dataclass
class Step:
    t_s: float  # from the drill's start, at 1x
    clock_ns: int  # bag time on /clock from this step on
    topic: str | None = None
    msgtype: str = ""
    data: bytes | None = None
    action: str = "publish"  # publish | down | up | incompatible | mark
    mark: str = ""


@dataclasses.dataclass
class Drill:
    name: str
    fault: str  # in words, for the table
    steps: list[Step]
    names_it: Callable[[str, str], bool]  # (status name, message) -> the problem is named
    recovered: Callable[[dict], bool]  # a published scene shows the sensor back
    during: tuple[float, float] | None = None  # bag-time window (s) of the fault


@dataclasses.dataclass
class DrillResult:
    drill: Drill
    diag_s: float | None  # fault -> first status naming it (wall)
    recover_s: float | None  # sensor back -> first frame using it (wall)
    accounted: int  # sum over inputs of used + dropped
    received: int  # sum over inputs of messages received
    sent: dict[str, int]  # per topic, on publishers the node could match
    inputs: dict[str, Any]
    scenes: list[tuple[float, dict]]
    published_during: int  # frames published with stamps inside ``during``
    camera_during: int  # camera frames sent inside ``during``
    id_reuse: int
    exit_code: int


def bag_steps(bag: Path, shift_from_s: float | None = None, shift_ns: int = 0) -> list[Step]:
    """The bag's messages (no ground truth) as publish steps at their log-time offsets;
    from ``shift_from_s`` on, stamps and clock moved by ``shift_ns``."""
    steps, start = [], None
    for rec in iter_bag(bag):
        if rec.topic.startswith("/ground_truth"):
            continue
        start = rec.log_time_ns if start is None else start
        t_s = (rec.log_time_ns - start) / 1e9
        msg, clock = rec.msg, rec.log_time_ns
        if shift_from_s is not None and t_s >= shift_from_s:
            msg, clock = shift_stamps(msg, shift_ns), clock + shift_ns
        data = bytes(TYPESTORE.serialize_cdr(msg, rec.msgtype))
        steps.append(Step(t_s, clock, rec.topic, rec.msgtype, data))
    return steps


def first_at(steps: list[Step], topic: str, t_s: float) -> Step:
    """The first message of ``topic`` at or after ``t_s``."""
    return min((s for s in steps if s.topic == topic and s.t_s >= t_s), key=lambda s: s.t_s)


def stamp_of(step: Step) -> int | None:
    msg = TYPESTORE.deserialize_cdr(step.data, step.msgtype)
    header = getattr(msg, "header", None)
    return None if header is None else header.stamp.sec * 10**9 + header.stamp.nanosec


def control(
    t_s: float, steps: list[Step], action: str, topic: str | None = None, mark: str = ""
) -> Step:
    """A control step at ``t_s`` (clock as the message before it)."""
    before = [s for s in steps if s.t_s <= t_s and s.action == "publish"]
    clock = max(before, key=lambda s: s.t_s).clock_ns if before else steps[0].clock_ns
    return Step(t_s, clock, topic, action=action, mark=mark)


class FaultPlayer:
    """Publishes a drill's steps on their schedule, /clock at 100 Hz between them."""

    def __init__(self, node: Any, steps: list[Step]) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self.node, self.steps = node, sorted(steps, key=lambda s: s.t_s)
        self.types = {s.topic: s.msgtype for s in self.steps if s.msgtype}
        self.reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        latched = QoSProfile(
            depth=100,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.pubs = {
            t: node.create_publisher(
                message_class(m), t, latched if t == "/tf_static" else self.reliable
            )
            for t, m in self.types.items()
        }
        self.matchable = dict.fromkeys(self.pubs, True)
        self.sent: dict[str, int] = {}
        self.marks: dict[str, float] = {}  # mark -> wall time
        from rosgraph_msgs.msg import Clock

        self.clock_pub = node.create_publisher(Clock, "/clock", 10)

    def _clock(self, ns: int) -> None:
        self.clock_pub.publish(clock_msg(ns))

    def _wait_matched(self, topics: list[str], timeout_s: float = 10.0) -> None:
        import rclpy

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(self.pubs[t].get_subscription_count() > 0 for t in topics):
                return
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def _replace(self, topic: str, qos: Any) -> None:
        self.node.destroy_publisher(self.pubs[topic])
        self.pubs[topic] = self.node.create_publisher(message_class(self.types[topic]), topic, qos)

    def play(self, tail_s: float = 1.0) -> None:
        import rclpy

        sensors = [t for t in self.pubs if t != "/tf_static"]
        self._wait_matched(sensors)
        start, clock_at, clock_ns = time.monotonic(), 0.0, self.steps[0].clock_ns
        for step in [*self.steps, Step(self.steps[-1].t_s + tail_s, -1, action="end")]:
            due = start + step.t_s
            while (now := time.monotonic()) < due:
                self._clock(clock_ns + int((now - clock_at) * 1e9))
                rclpy.spin_once(self.node, timeout_sec=min(0.01, max(due - now, 0.0)))
            if step.action == "end":
                break
            clock_at, clock_ns = due, step.clock_ns
            self._clock(clock_ns)
            if step.action == "publish":
                pub = self.pubs[step.topic]
                pub.publish(step.data)  # counted where a reader was matched to receive it
                if self.matchable[step.topic] and pub.get_subscription_count() > 0:
                    self.sent[step.topic] = self.sent.get(step.topic, 0) + 1
            elif step.action == "down":
                self.node.destroy_publisher(self.pubs.pop(step.topic))
            elif step.action == "up":
                self.pubs[step.topic] = self.node.create_publisher(
                    message_class(self.types[step.topic]), step.topic, self.reliable
                )
            elif step.action == "incompatible":
                self._replace(step.topic, self.best_effort)
                self.matchable[step.topic] = False
            elif step.action == "compatible":
                self._replace(step.topic, self.reliable)
                self.matchable[step.topic] = True
            if step.mark:
                self.marks[step.mark] = time.monotonic()


def _id_reuse(scenes: list[dict], max_missed_s: float) -> int:
    """Track ids seen again after they were gone longer than a track lives unseen (or
    across a step back in header time: every track before it was deleted)."""
    last_seen: dict[int, int] = {}
    reused, epoch_start, prev = 0, 0, None
    epochs: dict[int, int] = {}
    for scene in sorted(scenes, key=lambda s: s["_arrival"]):
        stamp = scene["stamp_ns"]
        if prev is not None and stamp < prev - 10**9:
            epoch_start += 1  # header time went back: a new epoch of tracks
        prev = stamp
        for obj in scene["objects"]:
            tid = obj.get("track_id")
            if tid is None:
                continue
            gone = tid in last_seen and stamp - last_seen[tid] > (max_missed_s + 0.5) * 1e9
            if gone or epochs.get(tid, epoch_start) != epoch_start:
                reused += 1
            last_seen[tid], epochs[tid] = stamp, epoch_start
    return reused


def run_drill(drill: Drill, tmp: Path) -> DrillResult:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from multimodal_perception.ros_pkg.live import (
        final_accounting,
        params_file,
        spin_for,
        start_node,
        stop_node,
    )

    proc = start_node(params_file(tmp / "params.yaml"), tmp / "node.log", NS)
    listener = Node(f"mmp_drill_{drill.name}")
    scenes: list[tuple[float, dict]] = []
    diagnostics: list[tuple[float, Any]] = []
    reliable = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
    listener.create_subscription(
        String, f"{NS}/scene", lambda m: scenes.append((time.monotonic(), json.loads(m.data))),
        reliable,
    )  # fmt: skip
    listener.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: diagnostics.append((time.monotonic(), m)), 50
    )
    try:
        up = spin_for(listener, 90, lambda: listener.count_publishers(f"{NS}/scene") > 0)
        assert up, (tmp / "node.log").read_text()[-3000:]
        player = FaultPlayer(listener, drill.steps)
        player.play()
        spin_for(listener, 1.5)
        code, _, stdout = stop_node(proc, signal.SIGINT, listener)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.destroy_node()
    final = final_accounting(stdout)
    marks = player.marks
    fault_at = marks.get("fault")
    named = [
        t for t, m in diagnostics for st in m.status
        if fault_at is not None and t >= fault_at and drill.names_it(st.name, st.message)
    ]  # fmt: skip
    back_at = marks.get("back")
    back = [
        t for t, scene in scenes
        if back_at is not None and t >= back_at and drill.recovered(scene)
    ]  # fmt: skip
    inputs = final["inputs"]
    received = sum(row["in"] for row in inputs.values())
    accounted = sum(row["used"] + sum(row["dropped"].values()) for row in inputs.values())
    published_during = camera_during = 0
    if drill.during is not None:
        t0 = drill.steps[0].clock_ns
        lo, hi = (t0 + int(x * 1e9) for x in drill.during)
        published_during = sum(lo <= s["stamp_ns"] < hi for _, s in scenes)
        camera_during = sum(
            1 for s in drill.steps if s.topic == CAMERA and s.data and lo <= stamp_of(s) < hi
        )
    for t, scene in scenes:
        scene["_arrival"] = t
    return DrillResult(
        drill, min(named) - fault_at if named else None,
        min(back) - back_at if back else None, accounted, received, player.sent, inputs,
        scenes, published_during, camera_during, _id_reuse([s for _, s in scenes], 1.0), code,
    )  # fmt: skip


def table(results: list[DrillResult]) -> str:
    def secs(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f} s"

    rows = [
        "| fault | time to diagnostic | time to recover | messages accounted / received "
        "| frames published during the fault | track id reuse |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        during = f"{r.published_during} / {r.camera_during}" if r.drill.during else "-"
        rows.append(
            f"| {r.drill.fault} | {secs(r.diag_s)} | {secs(r.recover_s)} | "
            f"{r.accounted} / {r.received} | {during} | {r.id_reuse} |"
        )
    return "\n".join(rows)
