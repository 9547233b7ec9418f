"""Calibration health, off the hot path: is each camera's lidar-camera rotation still
right? (``calibration.*``; the math is ``fusion.calib_health``.)

Every ``calibration.period_s`` of header time a check starts: the next frames with a
lidar sweep, spaced to spread ``calibration.frames`` over ``calibration.window_s``, are
kept (references, no copies) and handed to a worker thread of its own, which finds the
rotation that best aligns their depth edges with their image edges. While a check runs
no other starts (a due check waits for it: the stage never queues work). Replay runs
checks inline, so its outputs do not depend on timing.

A check's verdict: ``warn`` where an axis is off by more than ``calibration.warn_deg``
and twice its uncertainty, ``error`` beyond ``calibration.error_deg``. The newest check
per camera goes out as JSON (``calibration_health``, schema ``mmp.calibration/1``), as a
``/diagnostics`` status, and while it is not ok as the scene's degraded reason
``calibration_suspect``. The calibration in use is never changed; the suggested
correction is in the JSON.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Parameters
from .fusion import calib_health as ch
from .ros_pkg import outputs as out
from .ros_pkg.camera_info import CameraModel

log = logging.getLogger("multimodal_perception.calibration")
SCHEMA_ID = "mmp.calibration/1"
DEGRADED = "calibration_suspect"
LEVELS = {"ok": out.OK, "warn": out.WARN, "error": out.ERROR}


@dataclass(frozen=True)
class CalibrationCheck:
    camera: str  # '' for a one-camera setup
    start_ns: int
    end_ns: int
    verdict: str  # ok | warn | error
    estimate: ch.CalibrationEstimate
    worker_s: float = 0.0  # CPU time of the check on its thread

    def payload(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "schema": SCHEMA_ID,
            "camera": self.camera,
            "window_ns": [self.start_ns, self.end_ns],
            "verdict": self.verdict,
            # how far the calibration in use is turned from the camera as it is
            "rotation_error_deg": e.rotation_deg,
            "rotation_sigma_deg": {  # None: fewer than 4 frames, no spread to judge by
                a: (v if np.isfinite(v) else None) for a, v in e.rotation_sigma_deg.items()
            },
            # what to apply to the camera's extrinsic (about its body axes); not applied
            "suggested_correction_deg": {a: -v for a, v in e.rotation_deg.items()},
            "agreement": e.agreement,
            "agreement_corrected": e.agreement_corrected,
            "frames": e.frames,
            "depth_edges": e.points,
            "worker_s": round(self.worker_s, 3),
        }


def verdict(e: ch.CalibrationEstimate, warn_deg: float, error_deg: float) -> str:
    """warn / error where an axis is off by more than the limit and twice its spread;
    ``ok`` too where there is no spread (fewer than 4 frames): no warning unjudged."""
    worst = "ok"
    for axis in ch.AXES:
        off, sigma = abs(e.rotation_deg[axis]), e.rotation_sigma_deg[axis]
        significant = bool(np.isfinite(sigma)) and off > 2 * sigma
        if off > error_deg and significant:
            return "error"
        if off > warn_deg and significant:
            worst = "warn"
    return worst


@dataclass(frozen=True)
class Sample:
    """What a check needs of one fused frame (references, no copies)."""

    stamp_ns: int
    image: np.ndarray
    xyz: np.ndarray  # lidar points, lidar frame, moved to the camera stamp
    T_cam_lidar: np.ndarray  # the calibration in use
    camera: CameraModel

    def edge_frame(self, rotate_deg: np.ndarray | None = None) -> ch.EdgeFrame:
        """``rotate_deg``: the calibration in use turned first (checking the check)."""
        T = self.T_cam_lidar
        if rotate_deg is not None:
            T = ch.perturbed_extrinsic(T, np.asarray(rotate_deg, float))
        return ch.edge_frame(self.image, self.xyz, T)


def sample_of(frame: Any) -> Sample | None:
    """A ``SyncedFrame`` with a camera model, a lidar sweep and the camera's transform."""
    if frame.lidar is None or frame.camera is None or frame.T_cam_base is None:
        return None
    T = frame.T_cam_base @ frame.lidar.T_base_lidar
    return Sample(frame.stamp_ns, frame.image, frame.lidar.xyz, T, frame.camera)


class CalibrationHealth:
    def __init__(self, params: Parameters, inline: bool) -> None:
        self.enabled = bool(params["calibration.enabled"])
        self.period_ns = int(params["calibration.period_s"] * 1e9)
        self.window_ns = int(params["calibration.window_s"] * 1e9)
        self.frames = int(params["calibration.frames"])
        self.warn_deg = float(params["calibration.warn_deg"])
        self.error_deg = float(params["calibration.error_deg"])
        self.inline = inline  # replay: checks run where they are offered
        self.latest: dict[str, CalibrationCheck] = {}
        self.checks = 0
        self.worker_s = 0.0  # the worker's time over all checks
        self.problem = ""  # the newest failed check, in words
        self._lock = threading.Lock()
        self._collecting: dict[str, list[Sample]] = {}
        self._next_due: dict[str, int] = {}
        self._running: Future | None = None
        self._done: list[CalibrationCheck] = []
        self._pool: ThreadPoolExecutor | None = None  # made by the first check off-line

    def offer(self, camera: str, frame: Any) -> None:
        """A fused frame (``SyncedFrame``): kept if a check is collecting. Cheap."""
        if not self.enabled or (sample := sample_of(frame)) is None:
            return
        stamp = frame.stamp_ns
        due = self._next_due.get(camera, stamp)
        if stamp < due - self.period_ns:  # header time went back: start afresh
            due = self._next_due[camera] = stamp
            self._collecting.pop(camera, None)
        kept = self._collecting.get(camera)
        if kept is None:
            if stamp < due or self._busy():
                return
            kept = self._collecting[camera] = []
        spacing = self.window_ns / max(self.frames, 1)
        if kept and stamp - kept[-1].stamp_ns < 0.8 * spacing:  # frames come jittered
            return
        kept.append(sample)
        if len(kept) >= self.frames or stamp - kept[0].stamp_ns >= self.window_ns:
            del self._collecting[camera]
            self._next_due[camera] = kept[0].stamp_ns + self.period_ns
            self._start(camera, kept)

    def _busy(self) -> bool:
        return self._running is not None and not self._running.done()

    def _start(self, camera: str, samples: list[Sample]) -> None:
        if self.inline:
            self._check(camera, samples)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, "mmp-calibration")
        self._running = self._pool.submit(self._check, camera, samples)

    def _check(self, camera: str, samples: list[Sample]) -> None:
        t0 = time.thread_time()
        try:
            e = ch.estimate([s.edge_frame() for s in samples], samples[0].camera)
        except Exception as exc:  # a check must never take the node down, nor fail unseen
            log.exception("calibration check of camera %r failed", camera)
            with self._lock:
                self.problem = f"{type(exc).__name__}: {exc}"
            return
        spent = time.thread_time() - t0
        result = CalibrationCheck(
            camera, samples[0].stamp_ns, samples[-1].stamp_ns,
            verdict(e, self.warn_deg, self.error_deg), e, spent,
        )  # fmt: skip
        with self._lock:
            self.latest[camera] = result
            self._done.append(result)
            self.problem = ""  # checks work again
            self.checks += 1
            self.worker_s += spent

    def reset(self) -> None:
        """Header time went backwards: collections start again at the next frame."""
        self._collecting.clear()
        self._next_due.clear()

    def degraded(self, camera: str) -> str | None:
        """``calibration_suspect`` while the camera's newest check is not ok."""
        check = self.latest.get(camera)
        return DEGRADED if check is not None and check.verdict != "ok" else None

    def poll(self) -> list[tuple[int, str]]:
        """Finished checks since the last call: (window end stamp, JSON)."""
        with self._lock:
            done, self._done = self._done, []
        return [(c.end_ns, json.dumps(c.payload(), sort_keys=True)) for c in done]

    def diagnostics(self) -> list[out.StatusReport]:
        statuses = []
        if self.problem:
            name = "multimodal_perception: calibration check"
            statuses.append(out.StatusReport(name, out.ERROR, f"failed: {self.problem}"))
        with self._lock:
            latest = dict(self.latest)
            per_check_s = self.worker_s / self.checks if self.checks else 0.0
        for camera, c in sorted(latest.items()):
            e = c.estimate
            angles = ", ".join(
                f"{a} {e.rotation_deg[a]:+.2f} +- {e.rotation_sigma_deg[a]:.2f}" for a in ch.AXES
            )
            message = f"{c.verdict}: rotation error {angles} deg"
            if c.verdict != "ok":
                fix = ", ".join(f"{a} {-v:+.2f}" for a, v in e.rotation_deg.items())
                message += f"; suggested correction (not applied): {fix} deg"
            statuses.append(
                out.StatusReport(
                    f"multimodal_perception: calibration {camera or 'camera'}",
                    LEVELS[c.verdict],
                    message,
                    values={
                        "window_end_ns": c.end_ns,
                        "agreement": e.agreement,
                        "agreement_corrected": e.agreement_corrected,
                        "frames": e.frames,
                        "checks": self.checks,
                        "worker_s_per_check": f"{per_check_s:.3f}",
                    },
                )
            )
        return statuses

    def close(self) -> None:
        """Replay: a window still collecting at the end of the bag is checked if it has
        two frames (a short bag gets its check); the node's worker finishes its check."""
        if self.inline:
            for camera, kept in sorted(self._collecting.items()):
                if len(kept) >= 2:
                    self._check(camera, kept)
        self._collecting.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
