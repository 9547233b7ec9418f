"""``mmp batch`` against sequential loops: 8 one-second bags cut from the shipped bag.

Baselines (same run): ``replay()`` bag after bag in one warm Python process (models loaded
per bag, imports paid once), and a shell loop over ``mmp replay`` (a process per bag).
Then the process pool and Ray (a local instance started by the batch, and one already
running), 2 workers each. Overhead per bag: worker time not spent inside ``replay()`` (process
or actor start, imports, model loading once per worker, scheduling, idle workers at the
tail) = (wall x workers - sum of the bags' replay() times) / bags. The load average is
printed: on a shared machine other jobs take cores the workers would use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import report  # noqa: E402

from multimodal_perception.batch import BatchConfig, run_batch  # noqa: E402
from multimodal_perception.replay import replay  # noqa: E402
from multimodal_perception.ros_pkg.bag_io import BagWriter, bag_metadata, iter_bag  # noqa: E402

BAGS = 8
WORKERS = 2


def make_bags(root: Path) -> list[Path]:
    source = ROOT / "bags" / "urban_crossing_5s"
    records = list(iter_bag(source))
    t0 = records[0].log_time_ns
    static = [r for r in records if r.topic == "/tf_static"]
    bags = []
    for i in range(BAGS):
        a = t0 + (i % 5) * 10**9
        with BagWriter(root / f"bag_{i}", custom_data=bag_metadata(source)) as w:
            for r in static:
                w.write(r.topic, r.msg, a)
            for r in records:
                if r.topic != "/tf_static" and a <= r.log_time_ns < a + 10**9:
                    w.write(r.topic, r.msg, r.log_time_ns)
        bags.append(root / f"bag_{i}")
    return bags


def _overhead(batch: dict, wall: float) -> float:
    busy = sum(r["job_s"] for r in batch["bags"] if r["status"] == "ok")
    return (wall * batch["workers"] - busy) / BAGS


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        bags = make_bags(tmp / "bags")
        start = time.perf_counter()
        for bag in bags:
            replay([bag], tmp / "seq" / bag.name, progress=False)
        sequential = time.perf_counter() - start
        report(f"sequential replay() in one process, {BAGS} x 1 s bags (baseline)", sequential)
        mmp = Path(sys.executable).with_name("mmp")
        start = time.perf_counter()
        for bag in bags:
            args = [str(mmp), "replay", str(bag), "--out", str(tmp / "cli" / bag.name), "--quiet"]
            subprocess.run(args, check=True, capture_output=True)
        cli = time.perf_counter() - start
        report("sequential mmp replay, a process per bag", cli, sequential)
        runs = [("process pool", None, "pool")]
        try:
            import ray

            runs += [("Ray, local instance started by the batch", "local", "ray"), ("", "", "")]
        except ImportError:
            print("ray not installed: Ray rows skipped (pip install '.[ray]')")
        for label, address, name in runs:
            if name == "":  # Ray already running: the batch only schedules on it
                ray.init(num_cpus=WORKERS, include_dashboard=False)
                label, address, name = "Ray, instance already running", "auto", "ray_warm"
            start = time.perf_counter()
            batch = run_batch(
                [str(b) for b in bags],
                tmp / name,
                BatchConfig(),
                ray_address=address,
                workers=WORKERS,
                progress=False,
            )
            wall = time.perf_counter() - start
            assert batch["totals"]["ok"] == BAGS, batch["totals"]
            report(f"{label}, {WORKERS} workers", wall, sequential)
            print(f"{'':58} {'':12}   vs the mmp replay loop {wall / cli:5.2f}x")
            report(f"  overhead per bag ({label.split(',')[0]})", _overhead(batch, wall))
        if len(runs) == 3:
            ray.shutdown()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
