"""Soak: memory and speed of ``mmp replay`` over long recordings, sampled every 10 s.

A long synthetic recording is generated (never shipped): the shipped 5 s bag looped with
its stamps shifted, 60 s and 600 s. Each is replayed by ``mmp replay`` in its own process
while this script samples its resident memory (/proc) and the bag time done every 10 s.
Goal: peak RSS of the 600 s replay within 10 % of the 60 s one (memory bounded by the sync
window and output buffers, not the bag length). Set MMP_SOAK_SECONDS=60,600 (default) to
choose the lengths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

try:  # run as part of the bench package or as a script from bench/
    from .common import record
except ImportError:
    from common import record

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bags" / "urban_crossing_5s"
CACHE = REPO / ".cache" / "soak"


def looped_bag(seconds: int) -> Path:
    from multimodal_perception.ros_pkg.bag_io import BagWriter, iter_bag
    from multimodal_perception.ros_pkg.stamps import shift_stamps

    out = CACHE / f"looped_{seconds}s"
    if (out / "metadata.yaml").exists():
        return out
    records = [r for r in iter_bag(SHIPPED) if not r.topic.startswith("/ground_truth")]
    period = records[-1].log_time_ns - records[0].log_time_ns + 100_000_000
    with BagWriter(out) as writer:
        for loop in range(int(seconds * 1e9 // period)):
            delta = loop * period
            for r in records:
                if r.topic == "/tf_static" and loop:
                    continue
                writer.write(r.topic, shift_stamps(r.msg, delta), r.log_time_ns + delta)
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak(seconds: int) -> dict:
    bag = looped_bag(seconds)
    out = CACHE / f"out_{seconds}s"
    cmd = [str(Path(sys.executable).parent / "mmp"), "replay", str(bag), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    samples = []
    while proc.poll() is None:
        time.sleep(10.0)
        try:
            rss = _rss_mb(proc.pid)
        except OSError:
            break
        samples.append((round(time.monotonic() - start), round(rss)))
        print(
            f"  {seconds:4d} s bag: t={samples[-1][0]:5d} s  RSS {samples[-1][1]:6d} MB", flush=True
        )
    elapsed = time.monotonic() - start
    report = json.loads((out / "report.json").read_text())
    peak = max((r for _, r in samples), default=0)
    return {"seconds": seconds, "peak_rss_mb": peak, "frames": report["frames"],
            "fps": round(report["frames"] / elapsed, 2), "samples": samples}  # fmt: skip


def main() -> None:
    lengths = [int(s) for s in os.environ.get("MMP_SOAK_SECONDS", "60,600").split(",")]
    results = [soak(s) for s in lengths]
    for r in results:
        print(
            f"soak {r['seconds']:4d} s: {r['frames']} frames, {r['fps']} frames/s,"
            f" peak RSS {r['peak_rss_mb']} MB"
        )
    if len(results) >= 2 and results[0]["peak_rss_mb"]:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(
            f"peak RSS {results[-1]['seconds']} s / {results[0]['seconds']} s: {ratio:.3f}"
            " (goal <= 1.10)"
        )
        record(
            f"soak peak RSS, {results[-1]['seconds']} s bag",
            results[-1]["peak_rss_mb"],
            "MB",
            results[0]["peak_rss_mb"],
            "<= 1.10x",
            ratio <= 1.10,
        )


if __name__ == "__main__":
    main()
