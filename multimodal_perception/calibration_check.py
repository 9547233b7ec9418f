"""``mmp check-calibration BAG``: is the rig still calibrated? The lidar-camera rotation
error per camera, window by window of header time, from the recording alone.

Frames are read as the pipeline aligns them (ingest, sync, tf, calibration, motion
compensation; no models run); each window of ``window_s`` of header time is scored by
``fusion.calib_health`` (depth edges against image edges) and judged: ``ok``, ``warn``
(an axis off by more than ``warn_deg`` and twice its uncertainty) or ``error`` (more
than ``error_deg``). Nothing is changed: the suggested correction is printed, and
pictures show the lidar over the image before and after it. ``rotate`` perturbs the
extrinsic by construction (roll, pitch, yaw deg about the camera's body axes), for
checking the check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .calibration_stage import CalibrationCheck, verdict
from .config import load_parameters
from .fusion import calib_health as ch
from .fusion.projection import project_points
from .ros_pkg.bag_io import iter_bag
from .ros_pkg.camera_info import CameraModel

WARN_DEG, ERROR_DEG = 0.6, 1.5  # calibration.warn_deg, calibration.error_deg defaults


@dataclass(frozen=True)
class CheckFrame:
    camera_name: str  # '' for a one-camera setup
    stamp_ns: int
    image: np.ndarray
    xyz: np.ndarray  # lidar points, lidar frame, moved to the camera stamp
    T_cam_lidar: np.ndarray
    camera: CameraModel

    def edge_frame(self, rotate_deg: np.ndarray | None = None) -> ch.EdgeFrame:
        T = self.T_cam_lidar
        if rotate_deg is not None:
            T = ch.perturbed_extrinsic(T, np.asarray(rotate_deg, float))
        return ch.edge_frame(self.image, self.xyz, T)


def bag_frames(bag: Path, overrides: dict[str, Any] | None = None) -> list[CheckFrame]:
    """Every frame of the bag with a camera model and a lidar sweep, aligned as the
    pipeline aligns them."""
    from .pipeline import Pipeline
    from .ros_pkg.factory import RosbagsFactory
    from .ros_pkg.typestore import get_project_typestore

    params = load_parameters(None).with_overrides(overrides or {})
    pipeline = Pipeline(params, RosbagsFactory(get_project_typestore()))
    frames: list[CheckFrame] = []

    def keep(groups: list) -> None:
        for group in groups:
            aligned = pipeline.align_group(group)
            f = aligned.frame if aligned is not None else None
            if f is None or f.lidar is None or f.camera is None or f.T_cam_base is None:
                continue
            T = f.T_cam_base @ f.lidar.T_base_lidar
            frames.append(
                CheckFrame(aligned.camera.name, f.stamp_ns, f.image, f.lidar.xyz, T, f.camera)
            )

    for rec in iter_bag(bag):
        keep(pipeline.ingest(rec.topic, rec.msg))
    keep(pipeline.flush())
    return frames


def check_frames(
    frames: list[CheckFrame],
    window_s: float = 2.0,
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    warn_deg: float = WARN_DEG,
    error_deg: float = ERROR_DEG,
) -> list[CalibrationCheck]:
    """Windows of ``window_s`` of header time per camera, each estimated and judged."""
    results = []
    rotate = np.asarray(rotate_deg, float)
    for name in sorted({f.camera_name for f in frames}):
        mine = sorted((f for f in frames if f.camera_name == name), key=lambda f: f.stamp_ns)
        start = mine[0].stamp_ns
        while start <= mine[-1].stamp_ns:
            end = start + int(window_s * 1e9)
            window = [f for f in mine if start <= f.stamp_ns < end]
            if len(window) >= 1:
                e = ch.estimate([f.edge_frame(rotate) for f in window], window[0].camera)
                results.append(
                    CalibrationCheck(name, start, end, verdict(e, warn_deg, error_deg), e)
                )
            start = end
    return results


def overlay(frame: CheckFrame, rotate_deg: np.ndarray, correction_deg: np.ndarray) -> np.ndarray:
    """The lidar's depth edges over the image's edges (grey), before (red) and after
    (green) the suggested correction."""
    ef = frame.edge_frame(rotate_deg)
    canvas = (frame.image * 0.5).astype(np.uint8)
    canvas[ef.distance < 1.0] = (160, 160, 160)
    for angles, colour in ((np.zeros(3), (0, 0, 255)), (correction_deg, (0, 255, 0))):
        T = np.eye(4)
        T[:3, :3] = ch.rotation_about_body(angles)
        proj = project_points(ef.points, T, frame.camera, min_depth=1.0)
        for u, v in proj.uv.astype(int):
            cv2.circle(canvas, (int(u), int(v)), 1, colour, -1)
    return canvas


def report(results: list[CalibrationCheck]) -> list[str]:
    lines = [
        "| camera | window (s) | verdict | roll | pitch | yaw (deg, +- 1 sigma) "
        "| agreement before -> after | depth edges |",
        "|---|---|---|---|---|---|---|---|",
    ]
    t0 = min((r.start_ns for r in results), default=0)
    for r in results:
        e = r.estimate
        angles = " | ".join(
            f"{e.rotation_deg[a]:+.2f} +- {e.rotation_sigma_deg[a]:.2f}" for a in ch.AXES
        )
        lines.append(
            f"| {r.camera or 'camera'} | {(r.start_ns - t0) / 1e9:.1f}-{(r.end_ns - t0) / 1e9:.1f} "
            f"| {r.verdict} | {angles} | {e.agreement:.4f} -> {e.agreement_corrected:.4f} "
            f"| {e.points} ({e.frames} frames) |"
        )
    return lines


def run_check(
    bag: Path,
    out: Path,
    camera: str | None = None,
    window_s: float = 2.0,
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> list[CalibrationCheck]:
    frames = bag_frames(bag)
    if camera is not None:
        names = sorted({f.camera_name for f in frames})
        if camera not in names:
            raise ValueError(f"--camera {camera!r}: the bag's cameras are {names}")
        frames = [f for f in frames if f.camera_name == camera]
    if not frames:
        raise ValueError(f"{bag}: no frame with a camera model and a lidar sweep")
    results = check_frames(frames, window_s, rotate_deg)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.payload() for r in results]  # as on the node's calibration_health topic
    (out / "calibration.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "calibration.md").write_text("\n".join(report(results)) + "\n")
    for r in results[:1] + [r for r in results if r.verdict != "ok"][:2]:
        frame = next(f for f in frames if f.camera_name == r.camera and f.stamp_ns >= r.start_ns)
        correction = np.array([r.estimate.rotation_deg[a] for a in ch.AXES])
        name = f"overlay_{r.camera or 'camera'}_{(r.start_ns - results[0].start_ns) // 10**9}s.png"
        cv2.imwrite(str(out / name), overlay(frame, np.asarray(rotate_deg, float), correction))
    return results
