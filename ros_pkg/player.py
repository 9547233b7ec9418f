"""``mmp play BAG``: publish a bag's messages over DDS at their recorded rate, with /clock.

For machines with rclpy but no ``ros2 bag`` (ROS 2 from PyPI wheels): messages go out as
their stored CDR bytes (no re-encoding) on publishers of their recorded type, in log-time
order, paced by log time over ``rate``; ``/clock`` follows the bag's log time so nodes
with ``use_sim_time`` see bag time. /tf_static is published transient-local (latched).
After the last message the clock keeps ticking for ``tail_s`` of bag time, so that
nodes waiting on a header-time timeout finish their last frame. ``loops`` > 1 plays the
bag again and again as one continuous recording: each pass's log times and header stamps
move on by the bag's length (plus one 0.1 s gap), /tf_static goes out once.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock

from .bag_io import BagRecord
from .stamps import shift_stamps
from .typestore import get_project_typestore

LATCHED_TOPICS = ("/tf_static",)
LOOP_GAP_NS = 100_000_000


def message_class(msgtype: str) -> Any:
    """The rosidl class of a ``package/msg/Name`` type."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def clock_msg(stamp_ns: int) -> Clock:
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


Splice = Callable[[BagRecord], list[tuple[str, bytes | None]]]


def _wait_for_subscribers(node: Node, pubs: list[Any], wait: Callable[[float], None]) -> None:
    """Until every publisher whose topic has a subscriber in the graph is matched to it
    (and the matches held 0.3 s), at most 10 s. Messages sent before a match are lost to
    a volatile subscriber, and a latched one (/tf_static) reaches a transient-local
    subscriber that matches later only on the writer's next heartbeat (Fast DDS: up to
    3 s): a node would run its first seconds without its static transforms."""
    start = time.monotonic()
    ready_since: float | None = None
    while time.monotonic() - start < 10.0:
        wanted = [p for p in pubs if node.count_subscribers(p.topic_name) > 0]
        ready = bool(wanted) and all(p.get_subscription_count() > 0 for p in wanted)
        if not ready:
            ready_since = None
        elif ready_since is None:
            ready_since = time.monotonic()
        elif time.monotonic() - ready_since >= 0.3:
            return
        wait(0.05)


def play(
    bags: Sequence[Path],
    rate: float = 1.0,
    topics: Sequence[str] | None = None,
    clock_hz: float = 100.0,
    tail_s: float = 1.0,
    splice: Splice | None = None,
    extra_topics: dict[str, str] | None = None,
    spin: Node | None = None,
    loops: int = 1,
) -> dict[str, int]:
    """Publish; returns messages published per topic. rclpy must be initialised.

    ``splice`` (tests, fault drills) sees each deserialised record and returns what to
    publish in its place: ``(topic, cdr_bytes)`` pairs, ``None`` bytes for the record as
    stored; ``extra_topics`` (topic -> type) are topics it may add. ``spin``: a node of
    the caller's to spin while waiting, instead of sleeping.
    """
    if rate <= 0:
        raise ValueError(f"rate={rate}: must be > 0")
    node = Node("mmp_player")
    published: dict[str, int] = {}

    def wait(seconds: float) -> None:
        if spin is not None:
            rclpy.spin_once(spin, timeout_sec=max(seconds, 0.0))
        else:
            time.sleep(max(seconds, 0.0))

    try:
        clock_pub = node.create_publisher(Clock, "/clock", 10)
        pubs: dict[str, Any] = {}
        with AnyReader(
            [Path(b) for b in bags], default_typestore=get_project_typestore()
        ) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            types = {c.topic: c.msgtype for c in conns} | dict(extra_topics or {})
            for topic, msgtype in types.items():
                qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
                if topic in LATCHED_TOPICS:
                    qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
                pubs[topic] = node.create_publisher(message_class(msgtype), topic, qos)
            _wait_for_subscribers(node, list(pubs.values()), wait)
            start_wall = time.monotonic()
            start_log: int | None = None
            next_clock = 0.0
            last_log = 0
            typestore = get_project_typestore()
            period = reader.end_time - reader.start_time + LOOP_GAP_NS
            passes = (
                (loop * period, conn, log_ns + loop * period, raw)
                for loop in range(loops)
                for conn, log_ns, raw in reader.messages(connections=conns)
                if not (loop and conn.topic in LATCHED_TOPICS)
            )
            for shift, conn, log_ns, raw in passes:
                if shift:  # a later pass: the same messages, later stamps
                    moved = shift_stamps(reader.deserialize(raw, conn.msgtype), shift)
                    raw = typestore.serialize_cdr(moved, conn.msgtype)
                start_log = log_ns if start_log is None else start_log
                due = start_wall + (log_ns - start_log) / 1e9 / rate
                while (now := time.monotonic()) < due:
                    if now >= next_clock:
                        bag_now = start_log + int((now - start_wall) * rate * 1e9)
                        clock_pub.publish(clock_msg(bag_now))
                        next_clock = now + 1.0 / clock_hz
                    wait(min(due - now, 1.0 / clock_hz))
                clock_pub.publish(clock_msg(log_ns))
                outgoing: list[tuple[str, bytes | None]] = [(conn.topic, None)]
                if splice is not None:
                    msg = reader.deserialize(raw, conn.msgtype)
                    outgoing = splice(BagRecord(conn.topic, conn.msgtype, log_ns, msg))
                for topic, data in outgoing:
                    pubs[topic].publish(bytes(raw) if data is None else data)
                    published[topic] = published.get(topic, 0) + 1
                last_log = log_ns
            end = time.monotonic() + tail_s / rate
            while time.monotonic() < end:
                last_log += int(1e9 / clock_hz)
                clock_pub.publish(clock_msg(last_log))
                wait(1.0 / clock_hz / rate)
    finally:
        node.destroy_node()
    return published


def main(bags: Sequence[Path], rate: float, topics: Sequence[str] | None, loops: int = 1) -> int:
    rclpy.init()
    try:
        counts = play(bags, rate, topics, loops=loops)
    finally:
        rclpy.try_shutdown()
    for topic, n in sorted(counts.items()):
        print(f"  {topic:<40} {n:>6} published")
    return 0
