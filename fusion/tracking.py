"""Multi-object tracking in a fixed frame (odom when tf has it, else base_link).

One constant-velocity Kalman filter per track (state x, y, vx, vy; position measured
by 3D fusion, and radial velocity when radar saw the object: a linear measurement
``u . v`` along the line of sight). Detections are associated per class group with the
Hungarian method (scipy's linear_sum_assignment) on Mahalanobis-gated distance in metres. Tracks
are born tentative, confirmed after ``confirm_hits`` hits, and deleted after
``max_missed_s`` seconds unseen; ids are stable integers, never reused. Time is the
frame's header stamp; a step backwards by more than ``max_out_of_order_s`` resets the
tracker, a smaller one (a rig's cameras are triggered at different times and finish in
any order) is folded in by predicting back to that stamp.

With several cameras one tracker serves them all (objects are associated in 3D, so one
physical object seen by two cameras is one track); ``step`` then takes the camera's
``observable`` predicate: only tracks that camera could see count a miss.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

# Classes that may be confused with each other still associate: a truck called a bus, a
# rider called a person or a cyclist.
CLASS_GROUPS = {
    "car": "vehicle",
    "truck": "vehicle",
    "bus": "vehicle",
    "train": "vehicle",
    "person": "vru",
    "bicycle": "vru",
    "motorcycle": "vru",
    "cyclist": "vru",
}
# The position rows of the measurement matrix (state: x, y, vx, vy), made once.
POSITION_H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
POSITION_H.setflags(write=False)


@dataclass(frozen=True)
class TrackerConfig:
    confirm_hits: int = 3
    max_missed_s: float = 1.0
    gate_chi2: float = 13.8  # 99.9 % for 2 degrees of freedom
    max_distance_m: float = 4.0
    accel_noise: float = 3.0  # m/s^2, process noise of the constant-velocity model
    position_noise: float = 0.3  # m, lidar-fused measurement
    camera_only_noise: float = 2.0  # m, ground-plane estimates
    radial_velocity_noise: float = 0.3  # m/s
    merge_distance_m: float = 1.0
    merge_speed_mps: float = 1.0
    max_out_of_order_s: float = 0.5


@dataclass
class Measurement:
    xy: np.ndarray  # (2,) in the tracking frame
    cls: str
    score: float
    source: str = "lidar"
    radial_velocity: float = float("nan")  # over ground, m/s
    los: np.ndarray | None = None  # (2,) unit line of sight in the tracking frame
    payload: object = None  # what the caller wants back with the track
    # How long before the step's stamp the position was seen (a lidar sweep older than the
    # camera frame, sync policy latest): the update compares it with the track back then.
    age_s: float = 0.0


@dataclass
class Track:
    track_id: int
    cls: str
    x: np.ndarray  # (4,) x, y, vx, vy
    P: np.ndarray  # (4, 4)
    last_stamp: int
    born_stamp: int
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    score: float = 0.0
    existence: float = 0.5
    payload: object = None
    velocity_observed: bool = False

    @property
    def position(self) -> np.ndarray:
        return self.x[:2]

    @property
    def velocity(self) -> np.ndarray:
        return self.x[2:]


@dataclass
class Tracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _stamp: int | None = None
    resets: int = 0
    # After each step: the track of each measurement, in the order given.
    assignment: list[Track] = field(default_factory=list)

    @property
    def stamp(self) -> int | None:
        """The stamp the tracks' states are at (the last step's)."""
        return self._stamp

    def reset(self) -> None:
        """Forget every track (time went backwards, or the tracking frame changed); ids
        keep counting, so a track id never names two objects."""
        self.tracks.clear()
        self._stamp = None
        self.assignment = []
        self.resets += 1

    def _motion(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Constant-velocity transition F over ``dt`` and its process noise G G^T q (the
        same for every track of a step: made once)."""
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        q = self.config.accel_noise**2
        G = np.array([[dt**2 / 2, 0], [0, dt**2 / 2], [dt, 0], [0, dt]])
        return F, G @ G.T * q

    @staticmethod
    def _predict(track: Track, F: np.ndarray, Q: np.ndarray) -> None:
        track.x = F @ track.x
        track.P = F @ track.P @ F.T + Q

    def _update(self, track: Track, m: Measurement) -> None:
        noise = (
            self.config.camera_only_noise
            if m.source == "camera_only"
            else (self.config.position_noise)
        )
        H, z, R = POSITION_H, m.xy, np.eye(2) * noise**2
        if m.age_s > 0.0:  # seen age_s ago: position(t - age) = position - velocity * age
            H = POSITION_H.copy()
            H[0, 2] = H[1, 3] = -m.age_s
        if np.isfinite(m.radial_velocity) and m.los is not None:
            H = np.vstack([H, [0.0, 0.0, m.los[0], m.los[1]]])
            z = np.append(z, m.radial_velocity)
            R = np.diag([noise**2, noise**2, self.config.radial_velocity_noise**2])
            track.velocity_observed = True
        P = track.P
        y = z - H @ track.x
        S = H @ P @ H.T + R
        K = P @ H.T @ np.linalg.inv(S)
        track.x = track.x + K @ y
        track.P = (np.eye(4) - K @ H) @ P

    def _new_track(self, m: Measurement, stamp: int) -> Track:
        noise = (
            self.config.camera_only_noise
            if m.source == "camera_only"
            else (self.config.position_noise)
        )
        P = np.diag([noise**2, noise**2, 10.0**2, 10.0**2])
        track = Track(
            next(self._ids),
            m.cls,
            np.array([m.xy[0], m.xy[1], 0.0, 0.0]),
            P,
            stamp,
            stamp,
            score=m.score,
            payload=m.payload,
        )
        if np.isfinite(m.radial_velocity) and m.los is not None:
            # Seed the velocity along the line of sight from the radar.
            track.x[2:] = m.los * m.radial_velocity
            track.P[2:, 2:] = np.diag([4.0**2, 4.0**2])
            track.velocity_observed = True
        if self.config.confirm_hits <= 1:
            track.confirmed = True
        return track

    def _merge_duplicates(self, tracks: list[Track], owner: dict[int, Track]) -> list[Track]:
        """Two tracks of one class group closer than ``merge_distance_m`` and moving alike
        (within ``merge_speed_mps``) follow the same object (one was born from a detection
        the association missed): the older one stays."""
        # Each kept track with its group and state as floats (compared with every later one).
        kept: list[tuple[Track, str, float, float, float, float]] = []
        near, alike = self.config.merge_distance_m, self.config.merge_speed_mps
        for t in sorted(tracks, key=lambda t: (t.born_stamp, t.track_id)):
            group = CLASS_GROUPS.get(t.cls, t.cls)
            x, y, vx, vy = t.x.tolist()
            twin = next(
                (
                    k
                    for k, k_group, kx, ky, kvx, kvy in kept
                    if k_group == group
                    and math.hypot(kx - x, ky - y) < near
                    # objects crossing each other come close but move apart
                    and math.hypot(kvx - vx, kvy - vy) < alike
                ),
                None,
            )
            if twin is None:
                kept.append((t, group, x, y, vx, vy))
                continue
            twin.hits += t.hits if t.last_stamp == self._stamp else 0
            if t.last_stamp > twin.last_stamp:
                twin.last_stamp, twin.payload = t.last_stamp, t.payload
            for j, tr in owner.items():
                if tr is t:
                    owner[j] = twin
        return [k[0] for k in kept]

    def _alive(self, track: Track, stamp: int) -> bool:
        """Seen within ``max_missed_s`` of ``stamp``: a track may still be matched."""
        return (stamp - track.last_stamp) / 1e9 <= self.config.max_missed_s

    def step(
        self,
        stamp: int,
        measurements: list[Measurement],
        observable: Callable[[list[Track]], np.ndarray] | None = None,
    ) -> list[Track]:
        """Advance to ``stamp`` and fold in its measurements; returns the confirmed tracks
        seen in this frame (and coasting ones are kept internally). ``observable``: which
        of the tracks (a bool per track, all at once) this frame's sensor could have seen
        (default all); the others coast without a miss."""
        if self._stamp is not None and stamp < self._stamp - self.config.max_out_of_order_s * 1e9:
            self.tracks.clear()
            self.resets += 1
        # A small step back (another camera's earlier frame finished later) predicts the
        # tracks back to its stamp: the mean moves with the velocity, the process noise
        # still grows, and the next frame predicts forward again.
        dt = 0.0 if self._stamp is None else (stamp - self._stamp) / 1e9
        self._stamp = stamp
        # Unseen longer than a track may live: gone before association, so that after a
        # gap in the stream (or a clock step ahead) no new object gets an old id.
        self.tracks = [t for t in self.tracks if self._alive(t, stamp)]
        F, Q = self._motion(dt)
        for t in self.tracks:
            self._predict(t, F, Q)
        matched_tracks: set[int] = set()
        matched_meas: set[int] = set()
        owner: dict[int, Track] = {}
        groups = {CLASS_GROUPS.get(m.cls, m.cls) for m in measurements} | {
            CLASS_GROUPS.get(t.cls, t.cls) for t in self.tracks
        }
        for group in sorted(groups):
            ti = [i for i, t in enumerate(self.tracks) if CLASS_GROUPS.get(t.cls, t.cls) == group]
            mi = [j for j, m in enumerate(measurements) if CLASS_GROUPS.get(m.cls, m.cls) == group]
            if not ti or not mi:
                continue
            # Every track of the group against every measurement at once: d[a, b] is
            # measurement b's offset from track a.
            S = np.stack([self.tracks[i].P[:2, :2] for i in ti])
            S_inv = np.linalg.inv(S + np.eye(2) * self.config.position_noise**2)
            d = (
                np.array([measurements[j].xy for j in mi])[None]
                - np.array([self.tracks[i].position for i in ti])[:, None]
            )
            age = np.array([measurements[j].age_s for j in mi])
            if age.any():  # seen age_s ago: against where each track was then
                d += np.array([self.tracks[i].x[2:] for i in ti])[:, None] * age[None, :, None]
            maha = np.einsum("abi,aij,abj->ab", d, S_inv, d)
            euclid = np.hypot(d[..., 0], d[..., 1])
            slack = np.array([4.0 if measurements[j].source == "camera_only" else 0.0 for j in mi])
            gated = (maha <= self.config.gate_chi2) | (euclid <= 1.0)
            # Gate with the Mahalanobis distance, but rank by metres: a track that coasted
            # (large covariance) must not win over a steady one.
            cost = np.where(gated & (euclid <= self.config.max_distance_m + slack), euclid, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] >= 1e6:
                    continue
                track, m = self.tracks[ti[r]], measurements[mi[c]]
                self._update(track, m)
                track.hits += 1
                track.missed = 0
                track.last_stamp = stamp
                track.score = 0.7 * track.score + 0.3 * m.score
                track.payload = m.payload
                track.existence = min(1.0, track.existence + 0.2)
                if m.cls != track.cls and m.score > 0.6:
                    track.cls = m.cls
                if track.hits >= self.config.confirm_hits:
                    track.confirmed = True
                matched_tracks.add(ti[r])
                matched_meas.add(mi[c])
                owner[mi[c]] = track
        survivors = []
        visible = observable(self.tracks) if observable is not None else None
        for i, t in enumerate(self.tracks):
            in_view = visible is None or bool(visible[i])
            if i not in matched_tracks and in_view:
                t.missed += 1
                t.existence = max(0.0, t.existence - 0.25)
                t.payload = None
            if self._alive(t, stamp) and (t.confirmed or i in matched_tracks or not in_view):
                survivors.append(t)
        for j, m in enumerate(measurements):
            if j not in matched_meas:
                owner[j] = self._new_track(m, stamp)
                survivors.append(owner[j])
        self.tracks = self._merge_duplicates(survivors, owner)
        self.assignment = [owner[j] for j in range(len(measurements))]
        return [t for t in self.tracks if t.confirmed and t.last_stamp == stamp]
