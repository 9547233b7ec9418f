"""Planar trajectories of actors and the ego vehicle in the world (odom) frame.

A trajectory is a start state plus segments of constant acceleration and yaw rate
(straight, turning, braking to a stop, waiting). Speed and heading are exact functions
of time; positions are integrated once on a 1 ms grid and interpolated, so velocities
used for radar Doppler are the analytic derivative of the poses to within 1e-6 m.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DT = 1e-3


@dataclass(frozen=True)
class Segment:
    duration: float
    accel: float = 0.0  # m/s^2 along the heading; speed never goes below 0
    yaw_rate: float = 0.0  # rad/s (turning applies only while moving)


@dataclass(frozen=True)
class State:
    x: float
    y: float
    yaw: float
    vx: float
    vy: float
    yaw_rate: float

    @property
    def speed(self) -> float:
        return float(np.hypot(self.vx, self.vy))


@dataclass
class Trajectory:
    x0: float
    y0: float
    yaw0: float
    speed0: float
    segments: tuple[Segment, ...] = ()
    horizon: float = 60.0
    _table: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = int(np.ceil(self.horizon / DT)) + 1
        t = np.arange(n) * DT
        accel = np.zeros(n)
        yaw_rate = np.zeros(n)
        start = 0.0
        for seg in self.segments:
            mask = (t >= start) & (t < start + seg.duration)
            accel[mask], yaw_rate[mask] = seg.accel, seg.yaw_rate
            start += seg.duration
        # Speed integrates acceleration, clamped at standstill (a braking actor stops and
        # stays stopped): s_i = c_i - min(0, min_{j<=i} c_j) for the unclamped sum c.
        free = self.speed0 + np.concatenate([[0.0], np.cumsum(accel[:-1] * DT)])
        speed = free - np.minimum(np.minimum.accumulate(free), 0.0)
        yaw_rate = np.where(speed > 0, yaw_rate, 0.0)
        yaw = self.yaw0 + np.concatenate([[0.0], np.cumsum(yaw_rate[:-1] * DT)])
        vx, vy = speed * np.cos(yaw), speed * np.sin(yaw)
        # Trapezoidal integration of the velocity gives the positions.
        x = self.x0 + np.concatenate([[0.0], np.cumsum((vx[1:] + vx[:-1]) / 2 * DT)])
        y = self.y0 + np.concatenate([[0.0], np.cumsum((vy[1:] + vy[:-1]) / 2 * DT)])
        self._table = np.stack([t, x, y, yaw, vx, vy, yaw_rate], axis=1)

    def state(self, t: float) -> State:
        """State at ``t`` seconds; before 0 the actor is extrapolated at its initial velocity
        (sensor jitter can put the first stamp a little before the scenario's start)."""
        if t < -1.0 or t > self.horizon:
            raise ValueError(f"time {t} s outside the trajectory's horizon [-1, {self.horizon}]")
        if t < 0:
            x, y, yaw, vx, vy, _ = self._table[0, 1:7]
            return State(
                float(x + vx * t), float(y + vy * t), float(yaw), float(vx), float(vy), 0.0
            )
        pos = t / DT
        i = min(int(pos), len(self._table) - 2)
        f = pos - i
        row = self._table[i] * (1 - f) + self._table[i + 1] * f
        return State(*(float(v) for v in row[1:7]))


def straight(x: float, y: float, yaw: float, speed: float) -> Trajectory:
    return Trajectory(x, y, yaw, speed)


def stopping(
    x: float, y: float, yaw: float, speed: float, stop_after: float, brake: float
) -> Trajectory:
    """Cruise ``stop_after`` seconds, then brake at ``brake`` m/s^2 to a standstill."""
    return Trajectory(x, y, yaw, speed, (Segment(stop_after), Segment(60.0, -abs(brake))))


def turning(
    x: float,
    y: float,
    yaw: float,
    speed: float,
    turn_after: float,
    turn_angle: float,
    turn_time: float,
) -> Trajectory:
    """Cruise, turn by ``turn_angle`` over ``turn_time`` seconds, cruise on."""
    return Trajectory(
        x,
        y,
        yaw,
        speed,
        (Segment(turn_after), Segment(turn_time, 0.0, turn_angle / turn_time), Segment(60.0)),
    )


def waiting_then_walking(x: float, y: float, yaw: float, speed: float, wait: float) -> Trajectory:
    """Stand still for ``wait`` seconds, then accelerate briskly to ``speed``."""
    ramp = 0.5
    return Trajectory(x, y, yaw, 0.0, (Segment(wait), Segment(ramp, speed / ramp), Segment(60.0)))


def stop_and_go(
    x: float,
    y: float,
    yaw: float,
    speed: float,
    cruise: float,
    wait: float,
    accel: float = 1.0,
    start_after: float = 0.0,
) -> Trajectory:
    """Stand ``start_after`` seconds, pull away at ``accel`` to ``speed``, cruise ``cruise``
    seconds, brake at ``accel`` to a standstill, stand ``wait`` seconds, then pull away to
    ``speed`` again and drive on (a forklift stopping across an aisle for a while)."""
    ramp = speed / accel
    return Trajectory(
        x,
        y,
        yaw,
        0.0,
        (
            Segment(start_after),
            Segment(ramp, accel),
            Segment(cruise),
            Segment(ramp, -accel),
            Segment(wait),
            Segment(ramp, accel),
            Segment(60.0),
        ),
    )
