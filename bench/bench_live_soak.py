"""Live soak: the node (its own process, real rclpy, DDS on loopback) under the player
looping the shipped bag as one continuous recording, for MMP_LIVE_SOAK_MINUTES (default
20) minutes at 1x. Every minute: the node's resident memory and CPU (from /proc) and the
frames it published. At the end: its accounting, drops by reason.

Goals: RSS at the last minute within 5 % of minute 1; no drops beyond latest-wins
(``superseded_by_newer_frame``) and what one replay of the bag drops by design, times the
passes (the radar runs at 13 Hz, one scan per 10 Hz camera frame: 15 ``no_anchor`` a
pass); every camera message played accounted.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

try:  # run as part of the bench package or as a script from bench/
    from .common import record
except ImportError:
    from common import record

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bags" / "urban_crossing_5s"
CAMERA = "/camera/image_raw/compressed"


def _proc_sample(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds user+system) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


class Sampler(threading.Thread):
    """Every minute: RSS, CPU share of one core over the minute, frames published."""

    def __init__(self, pid: int, scenes: list[float]) -> None:
        super().__init__(daemon=True)
        self.pid, self.scenes = pid, scenes
        self.rows: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        _, last_cpu = _proc_sample(self.pid)
        last_frames = 0
        while not self.stop.wait(60.0):
            try:
                rss, cpu = _proc_sample(self.pid)
            except OSError:
                return
            frames = len(self.scenes)
            self.rows.append({
                "minute": len(self.rows) + 1, "rss_mb": round(rss, 1),
                "cpu_pct": round(100 * (cpu - last_cpu) / 60.0, 1),
                "frames": frames - last_frames, "t_s": round(time.monotonic() - start),
            })  # fmt: skip
            print("  minute {minute:3d}: RSS {rss_mb:7.1f} MB, CPU {cpu_pct:5.1f} %, "
                  "{frames} frames".format(**self.rows[-1]), flush=True)  # fmt: skip
            last_cpu, last_frames = cpu, frames


def soak(minutes: float) -> dict:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from multimodal_perception.accounting import drops_by_reason
    from multimodal_perception.ros_pkg.live import (
        final_accounting,
        live_node,
        params_file,
        spin_for,
        stop_node,
        wait_until_up,
    )
    from multimodal_perception.ros_pkg.player import play

    tmp = Path(tempfile.mkdtemp(prefix="mmp_live_soak_"))
    loops = max(1, round(minutes * 60 / 5.1))  # the bag is 5 s, plus the loop gap
    params, log = params_file(tmp / "params.yaml"), tmp / "node.log"
    scenes: list[float] = []
    with live_node(params, log, "mmp_soak_listener") as (proc, node):
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(String, "/perception/scene", lambda _m: scenes.append(0.0), qos)
        wait_until_up(node, log)
        sampler = Sampler(proc.pid, scenes)
        sampler.start()
        played = play([SHIPPED], spin=node, loops=loops)
        spin_for(node, 2.0)
        sampler.stop.set()
        code, _, stdout = stop_node(proc, signal.SIGINT, node)
    final = final_accounting(stdout)
    drops = dict(drops_by_reason(final["inputs"]))
    camera = final["inputs"][CAMERA]
    return {
        "minutes": minutes, "loops": loops, "exit_code": code, "samples": sampler.rows,
        "camera_played": played.get(CAMERA, 0), "camera_accounted":
        camera["used"] + sum(camera["dropped"].values()),
        "frames_published": final["frames_published"], "scenes_received": len(scenes),
        "drops": drops, "latency": final["latency"],
    }  # fmt: skip


def single_pass_drops() -> dict[str, int]:
    """What one replay of the shipped bag drops, by reason (the node's code, in process)."""
    from multimodal_perception.accounting import drops_by_reason
    from multimodal_perception.config import load_parameters
    from multimodal_perception.pipeline import Pipeline
    from multimodal_perception.ros_pkg.bag_io import iter_bag
    from multimodal_perception.ros_pkg.factory import RosbagsFactory
    from multimodal_perception.ros_pkg.typestore import get_project_typestore

    pipeline = Pipeline(load_parameters(None), RosbagsFactory(get_project_typestore()))
    for rec in iter_bag(SHIPPED):
        pipeline.process(rec.topic, rec.msg)
    pipeline.finish()
    pipeline.close()
    return dict(drops_by_reason(pipeline.accounting()))


def main() -> None:
    minutes = float(os.environ.get("MMP_LIVE_SOAK_MINUTES", "20"))
    r = soak(minutes)
    out = REPO / ".cache" / "soak" / "live_soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    samples = r["samples"]
    first, last = (samples[0], samples[-1]) if samples else ({}, {})
    growth = last.get("rss_mb", 0) / first["rss_mb"] - 1 if first else float("nan")
    expected = {k: v * r["loops"] for k, v in single_pass_drops().items()}
    other = {k: v - expected.get(k, 0) for k, v in r["drops"].items()
             if k != "superseded_by_newer_frame" and v != expected.get(k, 0)}  # fmt: skip
    print(
        f"live soak {minutes:g} min ({r['loops']} loops of the shipped bag): "
        f"{r['frames_published']} frames published of {r['camera_played']} played, "
        f"{r['scenes_received']} scenes received; RSS minute 1 {first.get('rss_mb')} MB, "
        f"minute {last.get('minute')} {last.get('rss_mb')} MB ({100 * growth:+.1f} %); "
        f"drops {r['drops']} (one replay's times the passes: {expected}); "
        f"node exit {r['exit_code']}; rows in {out}"
    )
    record(f"live soak RSS growth, minute 1 to {last.get('minute')}", 100 * growth, "%",
           None, "<= 5 %", growth <= 0.05)  # fmt: skip
    record(f"live soak drops beyond latest-wins and one replay's, {minutes:g} min",
           sum(other.values()), "messages", None, "0", not other)  # fmt: skip
    record("live soak camera messages accounted / played",
           r["camera_accounted"] / max(r["camera_played"], 1), "ratio", None, "1.0",
           r["camera_accounted"] == r["camera_played"])  # fmt: skip


if __name__ == "__main__":
    from common import write_results

    main()
    print(f"results: {write_results()}")
