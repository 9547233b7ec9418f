"""View-of-Delft example frames: camera, HDL-64 lidar, ZF 3+1D radar, KITTI-style calib.

Radar scans are float32 (N, 7): x, y, z, RCS, v_r, v_r_compensated, time, in the radar
frame; the radar calib's ``Tr_velo_to_cam`` is the radar-to-camera extrinsic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .kitti import CameraLidarCalib, object_calib, read_velodyne_bin, sensor_to_camera

RADAR_COLUMNS = ("x", "y", "z", "rcs", "v_r", "v_r_compensated", "time")


@dataclass(frozen=True)
class VodFrame:
    root: Path
    frame_id: str

    @property
    def image_path(self) -> Path:
        return self.root / "lidar/training/image_2" / f"{self.frame_id}.jpg"

    @property
    def lidar_path(self) -> Path:
        return self.root / "lidar/training/velodyne" / f"{self.frame_id}.bin"

    @property
    def radar_path(self) -> Path:
        return self.root / "radar/training/velodyne" / f"{self.frame_id}.bin"

    @property
    def label_path(self) -> Path:
        return self.root / "lidar/training/label_2" / f"{self.frame_id}.txt"

    def camera_calib(self) -> CameraLidarCalib:
        return object_calib(self.root / "lidar/training/calib" / f"{self.frame_id}.txt")

    def T_lidar_radar(self) -> np.ndarray:
        """Radar pose in the lidar frame, from the two sensors' camera extrinsics."""
        T_cam_radar = sensor_to_camera(self.root / "radar/training/calib" / f"{self.frame_id}.txt")
        T_cam_lidar = sensor_to_camera(self.root / "lidar/training/calib" / f"{self.frame_id}.txt")
        return np.linalg.inv(T_cam_lidar) @ T_cam_radar

    def lidar(self) -> np.ndarray:
        return read_velodyne_bin(self.lidar_path, 4)

    def radar(self) -> np.ndarray:
        return read_velodyne_bin(self.radar_path, 7)


def vod_frames(root: str | Path) -> list[VodFrame]:
    root = Path(root)
    ids = sorted(p.stem for p in (root / "lidar/training/velodyne").glob("*.bin"))
    return [
        VodFrame(root, i) for i in ids if (root / "radar/training/velodyne" / f"{i}.bin").exists()
    ]
