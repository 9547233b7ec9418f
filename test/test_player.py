"""``mmp play`` over real DDS: a looped bag is one continuous recording (header stamps
and /clock move on by the bag's length each pass, /tf_static goes out once, and arrives
with the first frames)."""

from __future__ import annotations

import itertools

import pytest

from conftest import REPO, need_rclpy

rclpy = need_rclpy()
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from multimodal_perception.ros_pkg.player import LOOP_GAP_NS, play  # noqa: E402

pytestmark = pytest.mark.slow
SHIPPED = REPO / "bags" / "urban_crossing_5s"


def test_a_looped_bag_plays_as_one_continuous_recording(ros):
    node = Node("mmp_player_test")
    stamps, clocks, statics = [], [], []
    reliable = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    order = []  # what arrived, in order
    node.create_subscription(
        CompressedImage, "/camera/image_raw/compressed",
        lambda m: (stamps.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec),
                   order.append("camera")), reliable,
    )  # fmt: skip
    node.create_subscription(
        Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec), 100
    )
    node.create_subscription(
        TFMessage, "/tf_static", lambda m: (statics.append(m), order.append("tf_static")), latched
    )
    try:
        counts = play([SHIPPED], rate=4.0, spin=node, loops=3, topics=None)
        rclpy.spin_once(node, timeout_sec=0.5)
    finally:
        node.destroy_node()
    assert counts["/camera/image_raw/compressed"] == 150 == len(stamps)
    assert counts["/tf_static"] == 1 == len(statics)
    # The player waits for every subscriber's match: the latched message is not left to the
    # writer's next heartbeat (seconds), it comes with the first frames.
    assert order.index("tf_static") <= 2, order[:10]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    period = stamps[50] - stamps[0]
    assert stamps[100] - stamps[50] == period
    assert stamps[49] < stamps[50] <= stamps[49] + 2 * LOOP_GAP_NS  # no jump back, one gap
    assert clocks[-1] >= stamps[-1] and all(b >= a for a, b in itertools.pairwise(clocks))
