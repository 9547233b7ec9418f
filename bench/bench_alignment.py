"""Synchroniser cost per message (30 Hz camera + 10 Hz lidar + 13 Hz radar, jittered) and
projection of a 120k-point cloud into a distorted camera, against cv2.projectPoints."""

from __future__ import annotations

import cv2
import numpy as np

from multimodal_perception.fusion.projection import project_points
from multimodal_perception.fusion.sync import SensorWindow, SyncConfig, Synchronizer
from multimodal_perception.ros_pkg.camera_info import CameraModel

try:  # run as part of the bench package or as a script from bench/
    from .common import record
except ImportError:
    from common import record

try:
    from .common import median_seconds, report
except ImportError:
    from common import median_seconds, report

MS = 1_000_000


def sync_events(seconds: float = 60.0) -> list[tuple[str, int]]:
    rng = np.random.default_rng(0)
    events = []
    for sensor, rate, offset in (("camera", 30.0, 0), ("lidar", 10.0, 20), ("radar", 13.0, 7)):
        n = int(seconds * rate)
        stamps = (np.arange(n) / rate * 1e9 + offset * MS + rng.normal(0, MS, n)).astype(np.int64)
        events += [(sensor, int(t)) for t in stamps]
    return sorted(events, key=lambda e: e[1])


def main() -> None:
    events = sync_events()
    config = SyncConfig(
        windows={"lidar": SensorWindow(20 * MS, 50 * MS), "radar": SensorWindow(7 * MS, 38 * MS)},
        timeout_ns=100 * MS,
    )

    def run() -> None:
        sync = Synchronizer(config)
        for sensor, stamp in events:
            sync.push(sensor, stamp, None)
        sync.flush()

    t = median_seconds(run, repeat=5, warmup=1)
    print(f"synchroniser: {len(events)} messages (30 Hz camera, 10 Hz lidar, 13 Hz radar)")
    print(f"{'synchroniser cost per message':58} {t / len(events) * 1e6:9.2f} us")
    record("synchroniser cost per message", t / len(events) * 1e6, "us")

    rng = np.random.default_rng(1)
    pts = np.column_stack(
        [rng.uniform(-80, 80, 120_000), rng.uniform(-80, 80, 120_000), rng.uniform(-2, 6, 120_000)]
    )
    K = np.array([[1000.0, 0, 960], [0, 1000, 600], [0, 0, 1]])
    D = np.array([-0.12, 0.03, 0.0004, -0.0003, 0.0])
    cam = CameraModel(1920, 1200, K, D, np.eye(3), np.hstack([K, np.zeros((3, 1))]), "plumb_bob")
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]  # lidar (x fwd) -> optical (z fwd)
    cv2.setNumThreads(1)
    rvec = cv2.Rodrigues(T[:3, :3])[0]

    def opencv() -> None:
        cam_pts = pts @ T[:3, :3].T
        front = cam_pts[:, 2] > 0.1
        uv, _ = cv2.projectPoints(pts[front].reshape(-1, 1, 3), rvec, T[:3, 3], K, D)
        uv = uv.reshape(-1, 2)
        _ = (uv[:, 0] >= 0) & (uv[:, 0] < 1920) & (uv[:, 1] >= 0) & (uv[:, 1] < 1200)

    base = median_seconds(opencv, repeat=15)
    report("cv2.projectPoints 120k points (+cull), 1 thread", base)
    t = median_seconds(lambda: project_points(pts, T, cam), repeat=15)
    report("project_points 120k points, plumb_bob, one core", t, base)
    t = median_seconds(lambda: project_points(pts, T, cam, rectified=True), repeat=15)
    report("project_points 120k points, rectified (P)", t, base)


if __name__ == "__main__":
    main()
