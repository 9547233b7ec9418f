"""``mmp check-calibration BAG``: is the rig still calibrated? The lidar-camera rotation
error per camera, window by window of header time, from the recording alone.

Frames are read as the pipeline aligns them (ingest, sync, tf, calibration, motion
compensation; the pipeline is the replay's, models loaded but not run) and streamed:
each window of ``window_s`` of header time (every frame in it, where the node's stage
spreads ``calibration.frames`` over its window) is scored by ``fusion.calib_health`` and
judged as the node judges it (``calibration_stage.verdict``; limits
``calibration.warn_deg`` / ``calibration.error_deg`` from a parameter file). Nothing is
changed: the suggested correction is printed, and pictures show the lidar over the
image before and after it. ``rotate`` turns the calibration in use by construction
(roll, pitch, yaw deg about the camera's body axes: what a stale calibration looks like
after the camera was knocked the other way), for checking the check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .calibration_stage import CalibrationCheck, Sample, sample_of, verdict
from .config import SPECS, load_parameters
from .fusion import calib_health as ch
from .fusion.projection import project_points
from .ros_pkg.bag_io import iter_bag

WARN_DEG = float(SPECS["calibration.warn_deg"].default)
ERROR_DEG = float(SPECS["calibration.error_deg"].default)
PICTURES = 3  # the first window's, and the first two beyond limits


def iter_frames(bag: Path, params_file: Path | None = None) -> Iterator[tuple[str, Sample]]:
    """(camera name, ``Sample``) of every frame with a camera model, a lidar sweep and
    the camera's transform, in the order the pipeline completes them."""
    from .pipeline import Pipeline
    from .ros_pkg.factory import RosbagsFactory
    from .ros_pkg.typestore import get_project_typestore

    pipeline = Pipeline(load_parameters(params_file), RosbagsFactory(get_project_typestore()))
    try:
        for rec in iter_bag(bag):
            for group in pipeline.ingest(rec.topic, rec.msg):
                yield from _samples(pipeline, [group])
        yield from _samples(pipeline, pipeline.flush())
    finally:
        pipeline.close()


def _samples(pipeline: Any, groups: list) -> Iterator[tuple[str, Sample]]:
    for group in groups:
        aligned = pipeline.align_group(group)
        sample = sample_of(aligned.frame) if aligned is not None else None
        if sample is not None:
            yield aligned.camera.name, sample


def bag_frames(bag: Path) -> list[tuple[str, Sample]]:
    """All of them at once (small bags: tests, the bench's perturbation sweeps)."""
    return list(iter_frames(bag))


def check_frames(
    frames: Iterable[tuple[str, Sample]],
    window_s: float = 2.0,
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    warn_deg: float = WARN_DEG,
    error_deg: float = ERROR_DEG,
    pictures: list[tuple[CalibrationCheck, Sample]] | None = None,
) -> list[CalibrationCheck]:
    """Windows of ``window_s`` of header time per camera, each estimated and judged as
    the frames stream by (one window per camera held). ``pictures`` collects the first
    window's and the first two beyond limits, with their first frame."""
    rotate = np.asarray(rotate_deg, float)
    results: list[CalibrationCheck] = []
    windows: dict[str, tuple[int, list[Sample]]] = {}

    def close(camera: str) -> None:
        start, kept = windows.pop(camera)
        e = ch.estimate([s.edge_frame(rotate) for s in kept], kept[0].camera)
        end = start + int(window_s * 1e9)
        check = CalibrationCheck(camera, start, end, verdict(e, warn_deg, error_deg), e)
        results.append(check)
        wanted = not results[:-1] or (check.verdict != "ok" and len(pictures or []) < PICTURES)
        if pictures is not None and wanted:
            pictures.append((check, kept[0]))

    for camera, sample in frames:
        if camera in windows and sample.stamp_ns >= windows[camera][0] + window_s * 1e9:
            close(camera)
        windows.setdefault(camera, (sample.stamp_ns, []))[1].append(sample)
    for camera in sorted(windows):
        close(camera)
    return results


def overlay(frame: Sample, rotate_deg: np.ndarray, correction_deg: np.ndarray) -> np.ndarray:
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
            f"{e.rotation_deg[a]:+.2f} +- {e.rotation_sigma_deg[a]:.2f}".replace("nan", "-")
            for a in ch.AXES
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
    params_file: Path | None = None,
) -> list[CalibrationCheck]:
    params = load_parameters(params_file)
    seen: set[str] = set()

    def chosen() -> Iterator[tuple[str, Sample]]:
        for name, sample in iter_frames(bag, params_file):
            seen.add(name)
            if camera is None or name == camera:
                yield name, sample

    pictures: list[tuple[CalibrationCheck, Sample]] = []
    results = check_frames(
        chosen(), window_s, rotate_deg, float(params["calibration.warn_deg"]),
        float(params["calibration.error_deg"]), pictures,
    )  # fmt: skip
    if camera is not None and camera not in seen:
        raise ValueError(f"--camera {camera!r}: the bag's cameras are {sorted(seen)}")
    if not results:
        raise ValueError(f"{bag}: no frame with a camera model, a lidar sweep and its tf")
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.payload() for r in results]  # as on the node's calibration_health topic
    (out / "calibration.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "calibration.md").write_text("\n".join(report(results)) + "\n")
    for check, frame in pictures:
        correction = np.array([check.estimate.rotation_deg[a] for a in ch.AXES])
        t = (check.start_ns - results[0].start_ns) // 10**9
        name = f"overlay_{check.camera or 'camera'}_{t}s.png"
        cv2.imwrite(str(out / name), overlay(frame, np.asarray(rotate_deg, float), correction))
    return results
