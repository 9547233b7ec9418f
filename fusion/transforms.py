"""A transform buffer fed by tf and tf_static, for ROS-free lookups at header stamps.

Frames form a tree (one parent per child). Dynamic edges keep a bounded history and are
interpolated at the query stamp (translation lerp, rotation slerp); static edges are
timeless, and a chain made only of static edges is composed once and cached. Errors say
which frames, which stamp and what was available. Calibration can also come from a
YAML file or a KITTI-style calib file for users without tf.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from ..ros_pkg.tf_msgs import StampedTransform, TransformList, transform_from_matrix


class TransformError(LookupError):
    """Base of lookup failures; ``reason`` is a short key for drop counters."""

    reason = "tf_error"


class UnknownFrameError(TransformError):
    reason = "unknown_frame"


class DisconnectedError(TransformError):
    reason = "frames_not_connected"


class ExtrapolationError(TransformError):
    reason = "tf_extrapolation"


class RejectedFrameError(UnknownFrameError):
    """The frame is unknown because every transform naming it was refused as invalid."""

    reason = "rejected_transform"


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quats: list[np.ndarray] = field(default_factory=list)

    def insert(self, t: StampedTransform, cache_ns: int) -> None:
        if self.static:
            self.stamps, self.translations, self.quats = (
                [t.stamp_ns],
                [t.translation],
                [t.rotation_xyzw],
            )
            return
        i = bisect.bisect_left(self.stamps, t.stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == t.stamp_ns:
            self.translations[i], self.quats[i] = t.translation, t.rotation_xyzw
        else:
            self.stamps.insert(i, t.stamp_ns)
            self.translations.insert(i, t.translation)
            self.quats.insert(i, t.rotation_xyzw)
        # Keep cache_ns of history behind the newest stamp.
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
        if cut:
            del self.stamps[:cut], self.translations[:cut], self.quats[:cut]

    def matrix_at(self, stamp: int | None, tolerance_ns: int, child: str) -> np.ndarray:
        if self.static or stamp is None:
            i = -1
            return _matrix(self.translations[i], self.quats[i])
        first, last = self.stamps[0], self.stamps[-1]
        if stamp <= first or stamp >= last:
            nearest = 0 if stamp <= first else -1
            gap = abs(stamp - self.stamps[nearest])
            if gap > tolerance_ns:
                raise ExtrapolationError(
                    f"{self.parent} -> {child} at {stamp} ns: history covers "
                    f"[{first}, {last}] ns, {gap / 1e6:.1f} ms beyond (tolerance "
                    f"{tolerance_ns / 1e6:.1f} ms)"
                )
            return _matrix(self.translations[nearest], self.quats[nearest])
        i = bisect.bisect_right(self.stamps, stamp)
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        f = (stamp - t0) / (t1 - t0)
        translation = (1 - f) * self.translations[i - 1] + f * self.translations[i]
        quat = _slerp(self.quats[i - 1], self.quats[i], f)
        return _matrix(translation, quat)


def _matrix(translation: np.ndarray, quat: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = Rotation.from_quat(quat).as_matrix()
    out[:3, 3] = translation
    return out


def _slerp(q0: np.ndarray, q1: np.ndarray, f: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + f * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - f) * theta) * q0 + np.sin(f * theta) * q1) / np.sin(theta)


class TransformSource(Protocol):
    """What the pipeline needs of tf: our :class:`TransformBuffer`, or the rclpy node's
    adapter over tf2_ros (``ros_pkg/tf2_adapter.py``)."""

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray: ...

    def clear(self) -> None: ...


class TransformBuffer:
    """``lookup(target, source, stamp)`` gives T (4x4) mapping ``source`` coordinates into
    ``target``, as tf2's ``lookup_transform(target, source, time)``."""

    def __init__(self, cache_ns: int = 10_000_000_000, tolerance_ns: int = 50_000_000) -> None:
        self.cache_ns = cache_ns
        self.tolerance_ns = tolerance_ns
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent
        self._static_cache: dict[tuple[str, str], np.ndarray] = {}
        self._rejected: dict[str, str] = {}  # child frame -> why its transform was refused
        # The node writes /tf from its subscription thread while the compute thread looks
        # transforms up: every public method holds the lock.
        self._lock = threading.RLock()

    def clear(self) -> None:
        """Forget dynamic history (after a time jump); static calibration stays."""
        with self._lock:
            for edge in self._edges.values():
                if not edge.static:
                    edge.stamps.clear(), edge.translations.clear(), edge.quats.clear()

    def set_transform(self, t: StampedTransform, static: bool = False) -> None:
        with self._lock:
            self._set_transform(t, static)
            self._rejected.pop(t.child, None)

    def apply(self, transforms: TransformList, static: bool = False) -> None:
        """One decoded TFMessage: its valid transforms set, its refused ones remembered."""
        with self._lock:
            for t in transforms:
                self.set_transform(t, static)
            for bad in transforms.rejected:
                self.reject(bad.parent, bad.child, bad.problem)

    def reject(self, parent: str, child: str, problem: str) -> None:
        """Remember a refused transform, so a lookup that needs ``child`` names it
        (until a valid transform for ``child`` arrives)."""
        with self._lock:
            self._rejected[child] = f"{parent} -> {child} was refused: {problem}"

    def _set_transform(self, t: StampedTransform, static: bool) -> None:
        edge = self._edges.get(t.child)
        if edge is None or edge.parent != t.parent or edge.static != static:
            if self._creates_cycle(t.parent, t.child):
                raise ValueError(f"{t.parent} -> {t.child} would close a loop in the tf tree")
            edge = _Edge(t.parent, static)
            self._edges[t.child] = edge
            self._static_cache.clear()
        edge.insert(t, self.cache_ns)
        if static:
            self._static_cache.clear()

    def _creates_cycle(self, parent: str, child: str) -> bool:
        frame: str | None = parent
        while frame is not None:
            if frame == child:
                return True
            edge = self._edges.get(frame)
            frame = edge.parent if edge else None
        return False

    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _to_ancestor(self, frame: str, ancestor: str, stamp: int | None) -> tuple[np.ndarray, bool]:
        """T_ancestor_frame, and whether every edge on the way is static."""
        T = np.eye(4)
        all_static = True
        while frame != ancestor:
            edge = self._edges[frame]
            if not edge.stamps:
                raise ExtrapolationError(f"{edge.parent} -> {frame}: no transform received yet")
            T = edge.matrix_at(stamp, self.tolerance_ns, frame) @ T
            all_static &= edge.static
            frame = edge.parent
        return T, all_static

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source at ``stamp_ns`` (None: the latest available)."""
        with self._lock:
            return self._lookup(target, source, stamp_ns)

    def _lookup(self, target: str, source: str, stamp_ns: int | None) -> np.ndarray:
        if target == source:
            return np.eye(4)
        cached = self._static_cache.get((target, source))
        if cached is not None:
            return cached
        known = self.frames()
        for frame in (target, source):
            if frame not in known and frame in self._rejected:
                raise RejectedFrameError(f"frame {frame!r}: {self._rejected[frame]}")
            if frame not in known:
                raise UnknownFrameError(
                    f"frame {frame!r} is unknown; known frames: {sorted(known) or 'none'}"
                )
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise DisconnectedError(
                f"{source!r} (root {up_source[-1]!r}) and {target!r} (root {up_target[-1]!r}) "
                "are in different tf trees"
            )
        T_common_source, s1 = self._to_ancestor(source, common, stamp_ns)
        T_common_target, s2 = self._to_ancestor(target, common, stamp_ns)
        T = np.linalg.inv(T_common_target) @ T_common_source
        if s1 and s2:
            self._static_cache[(target, source)] = T
        return T

    def can_transform(self, target: str, source: str, stamp_ns: int | None = None) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except TransformError:
            return False
        return True


def load_calibration_yaml(path: str | Path) -> list[StampedTransform]:
    """Static transforms from YAML::

    transforms:
      - parent: base_link
        child: camera_optical
        translation: [1.6, 0.0, 1.5]      # metres
        rotation_xyzw: [-0.5, 0.5, -0.5, 0.5]   # or rpy: [roll, pitch, yaw] radians
    """
    doc = yaml.safe_load(Path(path).read_text()) or {}
    items = doc.get("transforms")
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a non-empty 'transforms' list")
    out = []
    for i, item in enumerate(items):
        where = f"{path}: transforms[{i}]"
        try:
            parent, child = str(item["parent"]), str(item["child"])
            translation = np.asarray(item["translation"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{where}: needs parent, child and translation [x, y, z] ({exc})"
            ) from None
        if "rotation_xyzw" in item:
            quat = np.asarray(item["rotation_xyzw"], dtype=np.float64).reshape(4)
        elif "rpy" in item:
            quat = Rotation.from_euler("xyz", np.asarray(item["rpy"], float).reshape(3)).as_quat()
        else:
            raise ValueError(f"{where}: needs rotation_xyzw or rpy")
        if not (np.all(np.isfinite(translation)) and np.all(np.isfinite(quat))):
            raise ValueError(f"{where}: non-finite values")
        if np.linalg.norm(quat) < 1e-6:
            raise ValueError(f"{where}: rotation_xyzw {quat.tolist()} is not a rotation")
        out.append(StampedTransform(parent, child, 0, translation, quat / np.linalg.norm(quat)))
    return out


def load_kitti_calibration(
    path: str | Path, lidar_frame: str = "lidar", camera_frame: str = "camera_optical"
) -> list[StampedTransform]:
    """lidar -> camera from a KITTI object calib file (also View-of-Delft's)."""
    from ..datasets.kitti import object_calib

    calib = object_calib(path)
    return [transform_from_matrix(lidar_frame, camera_frame, 0, np.linalg.inv(calib.T_cam_lidar))]
