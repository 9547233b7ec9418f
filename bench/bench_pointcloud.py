"""PointCloud2 -> Nx3 float32 for a 120k-point cloud, against np.frombuffer + copy.

Baseline: a plain ``np.frombuffer`` view of the same bytes plus a copy (the least any
conversion must do). Target: at most 2x for the common layout.
"""

from __future__ import annotations

import numpy as np

from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.pointcloud import cloud_to_xyz, structured_to_cloud
from multimodal_perception.ros_pkg.typestore import get_project_typestore

try:
    from .common import median_seconds, record, report
except ImportError:  # run as a script
    from common import median_seconds, record, report

N = 120_000


def _cloud(layout: str, big_endian: bool = False):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-80, 80, (N, 3)).astype(np.float32)
    cols: dict[str, np.ndarray] = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    step = None
    if layout == "xyzi":
        cols["intensity"] = rng.uniform(0, 1, N).astype(np.float32)
    elif layout == "velodyne32":  # x y z pad intensity ring time, 32-byte points
        cols["intensity"] = rng.uniform(0, 1, N).astype(np.float32)
        cols["ring"] = rng.integers(0, 64, N).astype(np.uint16)
        cols["time"] = rng.uniform(0, 0.1, N).astype(np.float32)
        step = 32
    factory = RosbagsFactory(get_project_typestore())
    return structured_to_cloud(
        cols, factory=factory, stamp_ns=0, frame_id="lidar", big_endian=big_endian, point_step=step
    )


def main() -> None:
    print(f"PointCloud2 -> (N, 3) float32, N = {N}, one thread")
    for layout, big in (("xyzi", False), ("velodyne32", False), ("xyzi", True)):
        msg = _cloud(layout, big)
        data = msg.data
        baseline = median_seconds(lambda d=data: np.frombuffer(d, np.uint8).copy())
        report(f"baseline frombuffer+copy ({layout}, {len(data) / 1e6:.1f} MB)", baseline)
        t = median_seconds(lambda m=msg: cloud_to_xyz(m, remove_nonfinite=False))
        goal = 1.5 if big else 2.0
        name = f"cloud_to_xyz {layout}{' big-endian' if big else ''}"
        report(name, t, baseline, f"<= {goal}x")
        record(f"pointcloud.{name.replace(' ', '_')}", t * 1e3, "ms", baseline * 1e3,
               f"<= {goal}x frombuffer+copy", t / baseline <= goal)  # fmt: skip
        t = median_seconds(lambda m=msg: cloud_to_xyz(m))
        report(f"cloud_to_xyz {layout}{' big-endian' if big else ''} + NaN filter", t, baseline)


if __name__ == "__main__":
    main()
