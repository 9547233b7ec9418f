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

from .errors import LayoutError, SizeLimitError, ValueRangeError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .pointcloud import POINTCLOUD2, cloud_fields, cloud_to_xyz
from .stamps import header_stamp_ns, make_header

RADAR_SCAN = "radar_msgs/msg/RadarScan"
RADAR_TRACKS = "radar_msgs/msg/RadarTracks"

# Field names radar drivers use in PointCloud2 (ARS408/ARS548 drivers, VoD, Autoware).
VELOCITY_FIELDS = ("v_r_compensated", "v_r", "velocity", "doppler", "radial_velocity", "vr")
RCS_FIELDS = ("rcs", "RCS", "amplitude", "power", "intensity")


REMOVED_REASON = "implausible_radar_returns_removed"


@dataclass(frozen=True)
class RadarPoints:
    """Radar returns in the sensor frame.

    Returns that are not physical (non-finite or negative position, range over
    ``MessageLimits.max_radar_range_m``, ``|radial velocity|`` over
    ``max_radar_radial_velocity_mps``) are removed by the decoders: ``removed`` counts
    them, ``removed_reason`` is the note key to count them under and ``removed_detail``
    names the field and a value, for diagnostics.
    """

    stamp_ns: int
    frame_id: str
    xyz: np.ndarray  # (N, 3) float32, metres
    radial_velocity: np.ndarray  # (N,) float32, m/s, positive moving away; NaN if unknown
    rcs: np.ndarray  # (N,) float32, dBsm or amplitude dB; NaN if unknown
    velocity_field: str = ""  # where radial_velocity came from ("doppler" for RadarScan)
    removed: int = 0  # implausible returns removed from the message
    removed_reason: str = ""  # REMOVED_REASON when removed > 0
    removed_detail: str = ""  # "<msgtype>.<field>: ..." naming one removed value

    @property
    def over_ground(self) -> bool:
        """True when the radial velocity is already ego-motion compensated."""
        return self.velocity_field.endswith("compensated")

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@dataclass(frozen=True)
class RadarTrackArray:
    """Radar object tracks in the sensor frame (implausible ones removed and counted)."""

    stamp_ns: int
    frame_id: str
    ids: list[str]  # UUID hex
    position: np.ndarray  # (N, 3)
    velocity: np.ndarray  # (N, 3)
    size: np.ndarray  # (N, 3)
    classification: np.ndarray  # (N,) uint16
    removed: int = 0
    removed_reason: str = ""
    removed_detail: str = ""

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class _Screen:
    keep: np.ndarray  # bool per candidate
    removed: int  # including those removed before screening
    detail: str


def _screen(
    msgtype: str,
    item: str,
    xyz: np.ndarray,
    speed: np.ndarray,
    speed_field: str,
    limits: MessageLimits,
    *,
    total: int,
    invalid: np.ndarray | None = None,
) -> _Screen:
    """Keep returns with a finite position within range and a plausible speed.

    ``item`` names an element, e.g. ``"returns[{}]"``; ``speed`` NaN (unknown) is kept;
    ``invalid`` marks candidates already known bad (a negative range). ``total`` counts
    the message's returns, including any a caller removed before (non-finite cloud
    points); a message with returns but none kept raises ValueRangeError.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        rng = np.linalg.norm(xyz, axis=1)
        bad_pos = ~np.isfinite(xyz).all(axis=1) if invalid is None else invalid
        bad_pos = bad_pos | ~np.isfinite(rng)
        far = ~bad_pos & (rng > limits.max_radar_range_m)
        fast = np.abs(speed) > limits.max_radar_radial_velocity_mps  # NaN: unknown, kept
        fast &= ~(bad_pos | far)  # each removed return counted once
    keep = ~(bad_pos | far | fast)
    removed = total - int(keep.sum())
    if removed == 0:
        return _Screen(keep, 0, "")
    parts: list[str] = []
    field, value = "data", None  # the first removed return's field and value
    for mask, words, name, values in (
        (
            fast,
            f"|{speed_field}| over {limits.max_radar_radial_velocity_mps:g} m/s",
            speed_field,
            speed,
        ),
        (far, f"range over {limits.max_radar_range_m:g} m", "range", rng),
        (bad_pos, "non-finite or negative position", "position", None),
    ):
        if mask.any():
            parts.append(f"{int(mask.sum())} {words}")
            if value is None:
                i = int(np.flatnonzero(mask)[0])
                field = f"{item.format(i)}.{name}"
                value = float(values[i]) if values is not None else xyz[i].tolist()
    earlier = removed - int((~keep).sum())
    if earlier:
        parts.append(f"{earlier} with a NaN/Inf x/y/z")
        if value is None:
            value = f"<{earlier} points with a NaN/Inf x/y/z>"
    detail = f"{removed} of {total} returns removed ({', '.join(parts)})"
    if not keep.any():
        raise ValueRangeError(msgtype, field, value, f"no plausible return: {detail}")
    return _Screen(keep, removed, f"{msgtype}.{field}={value!r}: {detail}")


def radar_scan_to_points(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> RadarPoints:
    returns = msg.returns
    if len(returns) > limits.max_radar_returns:
        raise SizeLimitError(
            RADAR_SCAN, "returns", len(returns), f"over the cap of {limits.max_radar_returns}"
        )
    stamp = header_stamp_ns(msg, RADAR_SCAN, limits)
    table = np.array(
        [(r.range, r.azimuth, r.elevation, r.doppler_velocity, r.amplitude) for r in returns],
        dtype=np.float64,
    ).reshape(-1, 5)
    rng, az, el = table[:, 0], table[:, 1], table[:, 2]
    with np.errstate(invalid="ignore", over="ignore"):
        xyz = np.stack(
            [rng * np.cos(el) * np.cos(az), rng * np.cos(el) * np.sin(az), rng * np.sin(el)],
            axis=1,
        )
    invalid = ~np.isfinite(table[:, :3]).all(axis=1) | (rng < 0)
    screen = _screen(
        RADAR_SCAN,
        "returns[{}]",
        xyz,
        table[:, 3],
        "doppler_velocity",
        limits,
        total=len(table),
        invalid=invalid,
    )
    keep = screen.keep
    return RadarPoints(
        stamp,
        str(msg.header.frame_id),
        xyz[keep].astype(np.float32),
        table[keep, 3].astype(np.float32),
        table[keep, 4].astype(np.float32),
        "doppler",
        screen.removed,
        REMOVED_REASON if screen.removed else "",
        screen.detail,
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
            raise LayoutError(POINTCLOUD2, "fields", names, f"no {given!r}")
    stamp = header_stamp_ns(msg, POINTCLOUD2, limits)
    xyz, index = cloud_to_xyz(msg, limits=limits)
    if len(xyz) > limits.max_radar_returns:
        raise SizeLimitError(
            POINTCLOUD2, "width*height", len(xyz), f"over the cap of {limits.max_radar_returns}"
        )
    wanted = [n for n in (velocity_field, rcs_field) if n is not None]
    cols = cloud_fields(msg, wanted, index=index, limits=limits) if wanted else {}
    for name, col in cols.items():
        if col.ndim != 1:
            raise LayoutError(POINTCLOUD2, "fields", name, f"{name!r} must be a scalar field")
    nan = np.full(len(xyz), np.nan, dtype=np.float32)
    velocity = cols.get(velocity_field, nan) if velocity_field else nan
    rcs = cols.get(rcs_field, nan) if rcs_field else nan
    total = int(msg.width) * int(msg.height)
    screen = _screen(
        POINTCLOUD2,
        "data[{}]",
        xyz.astype(np.float64),
        velocity.astype(np.float64),
        velocity_field or "velocity",
        limits,
        total=total,
    )
    keep = screen.keep
    return RadarPoints(
        stamp,
        str(msg.header.frame_id),
        xyz[keep],
        velocity[keep],
        rcs[keep],
        velocity_field or "",
        screen.removed,
        REMOVED_REASON if screen.removed else "",
        screen.detail,
    )


def radar_tracks_to_arrays(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> RadarTrackArray:
    """Tracks as arrays; tracks with a non-finite value, out of range or faster than
    ``max_radar_radial_velocity_mps`` are removed and counted."""
    tracks = msg.tracks
    if len(tracks) > limits.max_radar_returns:
        raise SizeLimitError(
            RADAR_TRACKS, "tracks", len(tracks), f"over the cap of {limits.max_radar_returns}"
        )
    stamp = header_stamp_ns(msg, RADAR_TRACKS, limits)

    def vec(items: list[Any]) -> np.ndarray:
        return np.array([(v.x, v.y, v.z) for v in items], dtype=np.float64).reshape(-1, 3)

    position = vec([t.position for t in tracks])
    velocity = vec([t.velocity for t in tracks])
    size = vec([t.size for t in tracks])
    with np.errstate(invalid="ignore", over="ignore"):
        speed = np.linalg.norm(velocity, axis=1)
    invalid = ~np.isfinite(np.hstack([position, velocity, size])).all(axis=1)
    screen = _screen(
        RADAR_TRACKS,
        "tracks[{}]",
        position,
        np.where(invalid, np.nan, speed),
        "velocity",
        limits,
        total=len(tracks),
        invalid=invalid,
    )
    keep = screen.keep
    ids = [bytes(np.asarray(t.uuid.uuid, dtype=np.uint8)).hex() for t in tracks]
    return RadarTrackArray(
        stamp,
        str(msg.header.frame_id),
        [i for i, k in zip(ids, keep, strict=True) if k],
        position[keep],
        velocity[keep],
        size[keep],
        np.array([int(t.classification) for t in tracks], dtype=np.uint16)[keep],
        screen.removed,
        REMOVED_REASON if screen.removed else "",
        screen.detail,
    )


def radar_tracks_to_points(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> RadarPoints:
    """RadarTracks as points at their centroids with their velocity's radial part."""
    tracks = radar_tracks_to_arrays(msg, limits)
    rng = np.linalg.norm(tracks.position, axis=1)
    radial = np.einsum("ij,ij->i", tracks.velocity, tracks.position) / np.maximum(rng, 1e-6)
    return RadarPoints(
        tracks.stamp_ns,
        tracks.frame_id,
        tracks.position.astype(np.float32),
        radial.astype(np.float32),
        np.full(len(rng), np.nan, np.float32),
        "track_velocity",
        tracks.removed,
        tracks.removed_reason,
        tracks.removed_detail,
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
