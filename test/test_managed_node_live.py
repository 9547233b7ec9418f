"""The managed (lifecycle) node under real rclpy: a test client takes it through every
transition, as ``ros2 lifecycle set`` or Nav2's lifecycle manager would, and the shipped
bag is played over DDS in each state. Outputs arrive only while it is active; deactivate
keeps the models (activate resumes without reloading), cleanup frees them and prints the
session's accounting, shutdown ends the process with exit code 0."""

from __future__ import annotations

import json
import time

import pytest

from conftest import REPO, need_rclpy

rclpy = need_rclpy()
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from multimodal_perception.ros_pkg.live import params_file, spin_for, start_node  # noqa: E402
from multimodal_perception.ros_pkg.player import play  # noqa: E402

pytestmark = pytest.mark.slow
SHIPPED = REPO / "bags" / "urban_crossing_5s"
NS = "/perception"
NODE = f"{NS}/multimodal_perception"


class Client:
    """The lifecycle services of the node, and what it publishes on ``scene``."""

    def __init__(self) -> None:
        self.node = Node("mmp_lifecycle_client")
        self.scenes: list[float] = []
        self.camera_sent = 0
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(
            String, f"{NS}/scene", lambda m: self.scenes.append(json.loads(m.data)["stamp_ns"]),
            reliable,
        )  # fmt: skip
        # A subscriber of the camera topic, so the player starts at once in every state
        # (it waits for subscribers) and counts what it sent.
        self.node.create_subscription(
            CompressedImage, "/camera/image_raw/compressed", self._sent, reliable
        )
        self.change = self.node.create_client(ChangeState, f"{NODE}/change_state")
        self.get = self.node.create_client(GetState, f"{NODE}/get_state")

    def _sent(self, _msg) -> None:
        self.camera_sent += 1

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request, timeout_s=60).success

    def _call(self, client, request, timeout_s: float = 10):
        assert client.wait_for_service(timeout_sec=30), client.srv_name
        future = client.call_async(request)
        assert spin_for(self.node, timeout_s, future.done), client.srv_name
        return future.result()

    def play(self, rate: float = 1.0) -> int:
        """The bag once; returns the scenes published meanwhile (and 1 s after)."""
        before = len(self.scenes)
        play([SHIPPED], rate=rate, spin=self.node)
        spin_for(self.node, 1.0)
        return len(self.scenes) - before


@pytest.fixture(scope="module")
def managed_run(ros, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("managed")
    proc = start_node(
        params_file(tmp / "params.yaml"), tmp / "node.log", NS, "multimodal_perception_managed_node"
    )
    client = Client()
    steps: dict[str, object] = {}
    try:
        assert spin_for(client.node, 60, lambda: client.get.service_is_ready()), (
            tmp / "node.log"
        ).read_text()[-3000:]
        steps["start"] = client.state()
        steps["publishers_unconfigured"] = client.node.count_publishers(f"{NS}/scene")
        steps["scenes_unconfigured"] = client.play(rate=4.0)
        t0 = time.monotonic()
        steps["configure"] = client.transition(Transition.TRANSITION_CONFIGURE)
        steps["configure_s"] = time.monotonic() - t0
        steps["after_configure"] = client.state()
        steps["publishers_inactive"] = client.node.count_publishers(f"{NS}/scene")
        steps["scenes_inactive"] = client.play(rate=4.0)
        steps["activate"] = client.transition(Transition.TRANSITION_ACTIVATE)
        steps["after_activate"] = client.state()
        sent = client.camera_sent
        steps["scenes_active"] = client.play()
        steps["camera_sent_active"] = client.camera_sent - sent
        steps["deactivate"] = client.transition(Transition.TRANSITION_DEACTIVATE)
        steps["after_deactivate"] = client.state()
        steps["scenes_deactivated"] = client.play(rate=4.0)
        t0 = time.monotonic()
        steps["reactivate"] = client.transition(Transition.TRANSITION_ACTIVATE)
        steps["reactivate_s"] = time.monotonic() - t0
        steps["scenes_reactivated"] = client.play()
        steps["deactivate_again"] = client.transition(Transition.TRANSITION_DEACTIVATE)
        steps["cleanup"] = client.transition(Transition.TRANSITION_CLEANUP)
        steps["after_cleanup"] = client.state()
        spin_for(client.node, 1.0)  # the publishers' destruction reaches the graph
        steps["publishers_cleaned"] = client.node.count_publishers(f"{NS}/scene")
        steps["reconfigure"] = client.transition(Transition.TRANSITION_CONFIGURE)
        steps["activate_third"] = client.transition(Transition.TRANSITION_ACTIVATE)
        steps["scenes_third"] = client.play()
        steps["shutdown"] = client.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        steps["exit_code"] = proc.wait(timeout=20)
        steps["stdout"] = proc.communicate(timeout=10)[0]
        log = (tmp / "node.log").read_text()  # configure logs the models it loaded
        steps["model_loads"] = sum(
            "detector " in ln and "segmenter " in ln for ln in log.splitlines()
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        client.node.destroy_node()
    return steps


def _accountings(stdout: str) -> list[dict]:
    lines = [ln for ln in stdout.splitlines() if "final accounting:" in ln]
    return [json.loads(ln.split("final accounting:", 1)[1]) for ln in lines]


def test_it_starts_unconfigured_with_no_outputs(managed_run):
    assert managed_run["start"] == "unconfigured"
    assert managed_run["publishers_unconfigured"] == 0
    assert managed_run["scenes_unconfigured"] == 0


def test_configure_loads_and_makes_publishers_but_publishes_nothing(managed_run):
    assert managed_run["configure"] and managed_run["after_configure"] == "inactive"
    assert managed_run["publishers_inactive"] == 1
    assert managed_run["scenes_inactive"] == 0


def test_outputs_flow_only_while_active(managed_run):
    assert managed_run["activate"] and managed_run["after_activate"] == "active"
    assert managed_run["camera_sent_active"] == 50
    assert managed_run["scenes_active"] >= 45  # latest-wins may supersede a frame or two
    assert managed_run["deactivate"] and managed_run["after_deactivate"] == "inactive"
    assert managed_run["scenes_deactivated"] == 0
    assert managed_run["reactivate"] and managed_run["scenes_reactivated"] >= 45


def test_deactivate_keeps_the_models_and_only_configure_loads_them(managed_run):
    # Two configures in the run (the first, and the one after cleanup); the activation
    # after deactivate loaded nothing.
    assert managed_run["reactivate"] and managed_run["model_loads"] == 2


def test_cleanup_frees_and_accounts_and_configure_starts_a_new_session(managed_run):
    assert managed_run["cleanup"] and managed_run["after_cleanup"] == "unconfigured"
    assert managed_run["publishers_cleaned"] == 0
    first, second = _accountings(managed_run["stdout"])
    # Both active plays in the first session, every camera message accounted.
    camera = first["inputs"]["/camera/image_raw/compressed"]
    assert camera["in"] == 100 == camera["used"] + sum(camera["dropped"].values())
    assert set(camera["dropped"]) <= {"superseded_by_newer_frame"}
    expected = managed_run["scenes_active"] + managed_run["scenes_reactivated"]
    assert first["frames_published"] == expected
    assert managed_run["reconfigure"] and managed_run["activate_third"]
    assert second["frames_published"] == managed_run["scenes_third"] >= 45
    assert second["inputs"]["/camera/image_raw/compressed"]["in"] == 50


def test_shutdown_from_active_ends_the_process_cleanly(managed_run):
    assert managed_run["shutdown"] and managed_run["exit_code"] == 0
