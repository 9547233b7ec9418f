"""A camera rig: time per camera frame and the cost of each extra camera.

One synthetic surround bag (four cameras 25 ms apart, lidar, radar; sim/surround.py,
generated once into .cache/bags) replayed with 1, 2 and 4 of its cameras configured
(``cameras.names``), embedded tiny models. Baseline (same run): the one-camera replay.
Per camera frame: wall time / camera frames; per extra camera: (t_N - t_1) / (N - 1) per
rig cycle, as a ratio of the one-camera cycle. Lidar and radar are decoded once per
message however many cameras use them, so an extra camera should cost at most one more
camera frame (ratio <= 1.0).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import record, report  # noqa: E402

from multimodal_perception.config import load_parameters  # noqa: E402
from multimodal_perception.perception.stack import load_models  # noqa: E402
from multimodal_perception.replay import replay  # noqa: E402
from multimodal_perception.sim.surround import SurroundConfig, write_surround_bag  # noqa: E402

SECONDS = 2.0
RIGS = ("front", "front,rear", "front,left,rear,right")


def surround_bag() -> Path:
    path = ROOT / ".cache" / "bags" / f"surround_bench_{SECONDS:g}s"
    if not (path / "metadata.yaml").exists():
        write_surround_bag(path, SurroundConfig(seconds=SECONDS, start_s=3.0))
    return path


def main() -> None:
    bag = surround_bag()
    config = ROOT / "config" / "surround.yaml"
    models = load_models(load_parameters(config))
    cycle: dict[int, float] = {}
    for names in RIGS:
        rig = {"cameras.names": names, "cameras.merged_on": "front"}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            run = dict(overrides=rig, pictures=0, progress=False, models=models)
            replay([bag], out, config, **run)  # warm
            start = time.perf_counter()
            result = replay([bag], out, config, **run)
            wall = time.perf_counter() - start
        n = names.count(",") + 1
        frames = result.report["frames"]
        cycle[n] = wall / (frames / n)
        report(f"rig of {n}: per camera frame ({frames} frames)", wall / frames)
    one = cycle[1]
    for n in (2, 4):
        extra = (cycle[n] - one) / (n - 1)
        report(f"rig of {n}: cost per extra camera per cycle", extra, one, "<= 1.0x a camera")
        record(
            f"rig.extra_camera_cost_{n}",
            extra * 1e3,
            "ms",
            one * 1e3,
            "<= 1.0x the one-camera cycle",
            extra <= one,
        )


if __name__ == "__main__":
    main()
