"""Live latency of the node under real rclpy: receive -> publish per camera frame, header
stamps matched, at the bag's rate and at 2x, with the project-trained models on the shipped
bag and with the real models (YOLOX-nano + Cityscapes DeepLab) on the KITTI raw bag when
../shared is present. The baseline is the node's own per-frame compute time in the same
run: goal p95 (queue + compute) <= 1.5 x median compute, and no frame dropped at 1x with
the tiny models. Waiting for lidar/radar partners (header-time sync) is reported apart."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench_pipeline import SHARED, _bag

REPO = Path(__file__).resolve().parents[1]


def _run(label: str, bag: Path, rate: float, overrides: dict) -> None:
    from multimodal_perception.ros_pkg.live import run_live

    with tempfile.TemporaryDirectory(prefix="mmp-live-") as tmp:
        result = run_live(bag, Path(tmp), rate, overrides)
    node = result["node"]
    lat = node["latency"]
    camera = next(r for r in node["inputs"].values() if r["role"] == "camera" and r["in"])
    dropped = sum(camera["dropped"].values())
    compute = lat["compute_ms_p50"]
    queue_compute_p95 = lat["queue_wait_ms_p95"] + lat["compute_ms_p95"]
    print(
        f"{label:34} {rate:.0f}x  total p50 {lat['total_ms_p50']:6.1f}"
        f" p95 {lat['total_ms_p95']:6.1f} ms | partners p95 {lat['sync_wait_ms_p95']:5.1f}"
        " | queue+compute p95"
        f" {queue_compute_p95:6.1f} = {queue_compute_p95 / compute:4.2f}x compute median"
        f" {compute:5.1f} ms (goal <= 1.5x) | frames {camera['used']}/{camera['in']},"
        f" dropped {dropped}"
    )


def main() -> None:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print("rclpy is not installed (make ros-env): live latency not measured")
        return
    shipped = REPO / "bags" / "urban_crossing_5s"
    for rate in (1.0, 2.0):
        _run("tiny models, shipped bag", shipped, rate, {})
    bag, overrides = _bag()
    if overrides:
        overrides = {**overrides, "segmenter.mode": "letterbox"}  # single pass, as in replay
        for rate in (1.0, 2.0):
            _run(f"real models, {bag.name}", bag, rate, overrides)
    else:
        print(f"real models absent ({SHARED / 'models'}): measured with the tiny models only")


if __name__ == "__main__":
    main()
