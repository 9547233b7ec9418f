"""Radar messages to arrays: radar_msgs/RadarScan, radar_msgs/RadarTracks and radar
PointCloud2 with velocity and RCS fields.

Returns are converted to Cartesian points in the radar frame (REP 103: x forward,
azimuth anticlockwise from x, elevation up), with the radial (Doppler) velocity and
an amplitude/RCS column; NaN marks a column the source does not provide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LayoutError, SizeLimitError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .pointcloud import cloud_fields, cloud_to_xyz
from .stamps import header_stamp_ns, make_header

RADAR_SCAN = "radar_msgs/msg/RadarScan"
RADAR_TRACKS = "radar_msgs/msg/RadarTracks"

# Field names radar drivers use in PointCloud2 (ARS408/ARS548 drivers, VoD, Autoware).
VELOCITY_FIELDS = ("v_r_compensated", "v_r", "velocity", "doppler", "radial_velocity", "vr")
RCS_FIELDS = ("rcs", "RCS", "amplitude", "power", "intensity")


@dataclass(frozen=True)
class RadarPoints:
    """Radar returns in the sensor frame."""

    stamp_ns: int
    frame_id: str
    xyz: np.ndarray  # (N, 3) float32, metres
    radial_velocity: np.ndarray  # (N,) float32, m/s, positive moving away; NaN if unknown
    rcs: np.ndarray  # (N,) float32, dBsm or amplitude dB; NaN if unknown
    velocity_field: str = ""  # where radial_velocity came from ("doppler" for RadarScan)

    @property
    def over_ground(self) -> bool:
        """True when the radial velocity is already ego-motion compensated."""
        return self.velocity_field.endswith("compensated")

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@dataclass(frozen=True)
class RadarTrackArray:
    """Radar object tracks in the sensor frame."""

    stamp_ns: int
    frame_id: str
    ids: list[str]  # UUID hex
    position: np.ndarray  # (N, 3)
    velocity: np.ndarray  # (N, 3)
    size: np.ndarray  # (N, 3)
    classification: np.ndarray  # (N,) uint16

    def __len__(self) -> int:
        return len(self.ids)


def radar_scan_to_points(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> RadarPoints:
    returns = msg.returns
    if len(returns) > limits.max_radar_returns:
        raise SizeLimitError(
            RADAR_SCAN, "returns", len(returns), f"over the cap of {limits.max_radar_returns}"
        )
    table = np.array(
        [(r.range, r.azimuth, r.elevation, r.doppler_velocity, r.amplitude) for r in returns],
        dtype=np.float64,
    ).reshape(-1, 5)
    rng, az, el = table[:, 0], table[:, 1], table[:, 2]
    finite = np.isfinite(table[:, :3]).all(axis=1) & (rng >= 0)
    table, rng, az, el = table[finite], rng[finite], az[finite], el[finite]
    xyz = np.stack(
        [rng * np.cos(el) * np.cos(az), rng * np.cos(el) * np.sin(az), rng * np.sin(el)], axis=1
    ).astype(np.float32)
    return RadarPoints(
        header_stamp_ns(msg, RADAR_SCAN),
        str(msg.header.frame_id),
        xyz,
        table[:, 3].astype(np.float32),
        table[:, 4].astype(np.float32),
        "doppler",
    )


def _first_present(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def radar_cloud_to_points(
    msg: Any,
    *,
    velocity_field: str | None = None,
    rcs_field: str | None = None,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> RadarPoints:
    """A radar PointCloud2; velocity and RCS fields are found by common names if not given."""
    names = [str(f.name) for f in msg.fields]
    velocity_field = velocity_field or _first_present(names, VELOCITY_FIELDS)
    rcs_field = rcs_field or _first_present(names, RCS_FIELDS)
    for given in (velocity_field, rcs_field):
        if given is not None and given not in names:
            raise LayoutError("sensor_msgs/msg/PointCloud2", "fields", names, f"no {given!r}")
    xyz, index = cloud_to_xyz(msg, limits=limits)
    wanted = [n for n in (velocity_field, rcs_field) if n is not None]
    cols = cloud_fields(msg, wanted, index=index, limits=limits) if wanted else {}
    nan = np.full(len(xyz), np.nan, dtype=np.float32)
    return RadarPoints(
        header_stamp_ns(msg, "sensor_msgs/msg/PointCloud2"),
        str(msg.header.frame_id),
        xyz,
        cols.get(velocity_field, nan) if velocity_field else nan,
        cols.get(rcs_field, nan) if rcs_field else nan,
        velocity_field or "",
    )


def radar_tracks_to_arrays(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> RadarTrackArray:
    tracks = msg.tracks
    if len(tracks) > limits.max_radar_returns:
        raise SizeLimitError(
            RADAR_TRACKS, "tracks", len(tracks), f"over the cap of {limits.max_radar_returns}"
        )

    def vec(items: list[Any]) -> np.ndarray:
        return np.array([(v.x, v.y, v.z) for v in items], dtype=np.float64).reshape(-1, 3)

    return RadarTrackArray(
        header_stamp_ns(msg, RADAR_TRACKS),
        str(msg.header.frame_id),
        [bytes(np.asarray(t.uuid.uuid, dtype=np.uint8)).hex() for t in tracks],
        vec([t.position for t in tracks]),
        vec([t.velocity for t in tracks]),
        vec([t.size for t in tracks]),
        np.array([int(t.classification) for t in tracks], dtype=np.uint16),
    )


def points_to_radar_scan(
    xyz: np.ndarray,
    radial_velocity: np.ndarray,
    amplitude: np.ndarray,
    *,
    factory: MessageFactory,
    stamp_ns: int,
    frame_id: str,
) -> Any:
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    rng = np.linalg.norm(xyz, axis=1)
    az = np.arctan2(xyz[:, 1], xyz[:, 0])
    el = np.arcsin(np.divide(xyz[:, 2], rng, out=np.zeros_like(rng), where=rng > 0))
    returns = [
        factory.make(
            "radar_msgs/msg/RadarReturn",
            range=float(r),
            azimuth=float(a),
            elevation=float(e),
            doppler_velocity=float(v),
            amplitude=float(p),
        )
        for r, a, e, v, p in zip(rng, az, el, radial_velocity, amplitude, strict=True)
    ]
    return factory.make(
        RADAR_SCAN, header=make_header(factory, stamp_ns, frame_id), returns=returns
    )
