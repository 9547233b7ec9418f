"""A live run of the node as users start it: its own process, a bag played over DDS.

``make live-demo`` (``python -m multimodal_perception.ros_pkg.live``) and the live bench
use it: the node starts from its console entry point with a parameter file and sim time;
``mmp play`` logic publishes the bag with /clock; a recorder subscribes to every output
(CDR as received) and writes them to ``output.mcap``; SIGINT ends the node, whose final
accounting (frames, latency, drops) is read from its stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer

from .player import play
from .typestore import get_project_typestore

NS = "/perception"
OUTPUT_TYPES = {
    "detections_2d": "vision_msgs/msg/Detection2DArray",
    "rejected_2d": "vision_msgs/msg/Detection2DArray",
    "objects_3d": "vision_msgs/msg/Detection3DArray",
    "scene": "std_msgs/msg/String",
    "scene_text": "std_msgs/msg/String",
    "markers": "visualization_msgs/msg/MarkerArray",
    "segmentation": "sensor_msgs/msg/Image",
    "label_info": "vision_msgs/msg/LabelInfo",
    "answer": "std_msgs/msg/String",
    "query_result": "std_msgs/msg/String",
    "scene_caption": "std_msgs/msg/String",
    "calibration_health": "std_msgs/msg/String",
}
REPO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "perception.yaml"


def params_file(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """The shipped parameter file with reliable sensor QoS (nothing lost on loopback, so
    the node's accounting can be compared with what was played) and ``overrides``."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    config = REPO_CONFIG
    if not config.exists():
        try:
            share = get_package_share_directory("multimodal_perception")
            config = Path(share) / "config" / "perception.yaml"
        except PackageNotFoundError:
            raise FileNotFoundError(f"no parameter file at {REPO_CONFIG}") from None
    doc = yaml.safe_load(config.read_text())
    section = doc["/**"]["ros__parameters"]
    section["qos"] = {"reliability": "reliable", "depth": 100}
    for name, value in (overrides or {}).items():
        node = section
        *parents, leaf = name.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(doc))
    return path


def start_node(
    params: Path, log: Path, namespace: str = NS, executable: str = "multimodal_perception_node"
) -> subprocess.Popen:
    """The node (``multimodal_perception_managed_node``: the lifecycle one) from its
    console entry point, stdout piped (its final accounting), stderr to ``log``."""
    exe = Path(sys.executable).parent / executable
    cmd = [str(exe), "--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(params)]
    cmd += ["-p", "use_sim_time:=true"]
    with open(log, "w") as err:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=os.environ)


def spin_for(node: Node, seconds: float, until: Any = None) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if until is not None and until():
            return True
    return until is None


def stop_node(proc: subprocess.Popen, sig: int, spin: Node) -> tuple[int, float, str]:
    """Signal the node, keep spinning ``spin`` while it publishes its last frames; returns
    (exit code, seconds from signal to exit, stdout)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    while proc.poll() is None and time.monotonic() - t0 < 10:
        rclpy.spin_once(spin, timeout_sec=0.02)
    exit_s = time.monotonic() - t0
    if proc.poll() is None:
        proc.kill()
    stdout = proc.communicate(timeout=10)[0]
    spin_for(spin, 0.5)
    return proc.returncode, exit_s, stdout


def final_accounting(stdout: str) -> dict[str, Any]:
    line = next((ln for ln in stdout.splitlines() if "final accounting:" in ln), None)
    if line is None:
        raise RuntimeError("the node printed no final accounting")
    return json.loads(line.split("final accounting:", 1)[1])


class Recorder:
    """Every output topic (and /diagnostics) as received, into a rosbag2 MCAP."""

    def __init__(self, node: Node, path: Path | None, namespace: str = NS) -> None:
        self.node = node
        self.arrivals: dict[str, list[float]] = {}
        self._writer = None
        topics = {f"{namespace}/{k}": v for k, v in OUTPUT_TYPES.items()}
        topics["/diagnostics"] = "diagnostic_msgs/msg/DiagnosticArray"
        if path is not None:
            self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
            self._writer.open()
        typestore = get_project_typestore()
        for topic, msgtype in topics.items():
            conn = None
            if self._writer is not None:
                conn = self._writer.add_connection(topic, msgtype, typestore=typestore)
            qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
            if topic.endswith("label_info"):
                qos = QoSProfile(
                    depth=1,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL,
                )
            package, _, name = msgtype.split("/")
            cls = getattr(__import__(f"{package}.msg", fromlist=[name]), name)
            node.create_subscription(cls, topic, self._callback(topic, conn), qos, raw=True)

    def _callback(self, topic: str, conn: Any):
        def on_raw(raw: bytes) -> None:
            now = time.monotonic()
            self.arrivals.setdefault(topic, []).append(now)
            if self._writer is not None:
                self._writer.write(conn, time.time_ns(), raw)

        return on_raw

    def rates(self) -> dict[str, dict[str, float]]:
        out = {}
        for topic, times in sorted(self.arrivals.items()):
            span = times[-1] - times[0]
            rate = (len(times) - 1) / span if len(times) > 1 and span > 0 else 0.0
            out[topic] = {"messages": len(times), "rate_hz": round(rate, 2)}
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@contextlib.contextmanager
def live_node(params: Path, log: Path, listener: str) -> Iterator[tuple[subprocess.Popen, Node]]:
    """The node in its own process and a listener node in this one (rclpy up while
    inside); on the way out the listener is destroyed, a node still running killed, and
    rclpy shut down."""
    proc = start_node(params, log)
    rclpy.init()
    try:
        node = Node(listener)
        try:
            yield proc, node
        finally:
            node.destroy_node()
    finally:
        if proc.poll() is None:
            proc.kill()
        rclpy.try_shutdown()


def wait_until_up(node: Node, log: Path, namespace: str = NS) -> None:
    """Until the node publishes its scene (models loaded), at most 120 s."""
    if not spin_for(node, 120, lambda: node.count_publishers(f"{namespace}/scene") > 0):
        raise RuntimeError(f"the node did not come up: see {log}")


def run_live(
    bag: Path, out_dir: Path, rate: float = 1.0, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Node + player + recorder; returns what the listener saw and the node's accounting."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "output", ignore_errors=True)
    params, log = params_file(out_dir / "params.yaml", overrides), out_dir / "node.log"
    with live_node(params, log, "mmp_live_recorder") as (proc, node):
        recorder = Recorder(node, out_dir / "output")
        try:
            wait_until_up(node, log)
            played = play([bag], rate=rate, spin=node)
            spin_for(node, 1.0)
            code, exit_s, stdout = stop_node(proc, signal.SIGINT, node)
        finally:
            recorder.close()
    final = final_accounting(stdout)
    return {
        "rate": rate,
        "played": played,
        "topics": recorder.rates(),
        "node": final,
        "exit_code": code,
        "exit_s": round(exit_s, 3),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    node = result["node"]
    lat = node["latency"]
    lines = [
        f"live run at {result['rate']}x: {node['frames_published']} frames published, "
        f"latency receive->publish p50 {lat.get('total_ms_p50')} ms, "
        f"p95 {lat.get('total_ms_p95')} ms; of it: waiting for partners p50 "
        f"{lat.get('sync_wait_ms_p50')} / p95 {lat.get('sync_wait_ms_p95')} ms, queued p95 "
        f"{lat.get('queue_wait_ms_p95')} ms, compute p50 {lat.get('compute_ms_p50')} / p95 "
        f"{lat.get('compute_ms_p95')} ms; node exit {result['exit_code']} in {result['exit_s']} s",
        "topics seen by the recorder:",
    ]
    lines += [
        f"  {topic:<36} {row['messages']:>5} msgs {row['rate_hz']:>6} Hz"
        for topic, row in result["topics"].items()
    ]
    lines.append("inputs (node accounting):")
    for topic, row in sorted(node["inputs"].items()):
        if row["in"]:
            lines.append(f"  {topic:<36} in {row['in']:>4} used {row['used']:>4} {row['dropped']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/live"))
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--model-dir", default="", help="real model directory")
    args = parser.parse_args(argv)
    overrides = {"models.directory": args.model_dir} if args.model_dir else None
    result = run_live(args.bag, args.out, args.rate, overrides)
    (args.out / "live.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    print("\n".join(summary_lines(result)))
    print(f"recorded: {args.out / 'output'}; summary: {args.out / 'live.json'}")
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
