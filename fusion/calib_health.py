"""Targetless lidar-camera calibration health: do a sweep's depth edges fall on the
image's edges, and which small rotation (and lidar time offset) would make them agree?

After Levinson & Thrun (RSS 2013, "Automatic online calibration of cameras and lasers"):
points where the range jumps towards the sensor along a lidar ring are depth edges
(weighted by the jump's square root); the image is turned into an edge map that is 1 on
an edge and falls off with the distance to it; agreement is the weighted mean of the
edge map at the projected depth edges over the frames of a window. Depth edges are
found in the lidar's own angles (rings by elevation, neighbours by azimuth), so they do
not depend on the calibration under test.

The estimate is a neighbourhood search (coarse to fine, from two starts) over a rotation
of the camera about its own body axes (REP 103: roll about forward, pitch about left,
yaw about up).
Its uncertainty is the spread between the estimates on the window's even and odd
frames. (A lidar time offset is not estimated: on the recordings here it could not be
told from a yaw error; see bench/RESULTS.md.) Pure functions over numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..ros_pkg.camera_info import CameraModel
from .projection import project_points

AXES = ("roll", "pitch", "yaw")
# Camera body axes (REP 103: x forward, y left, z up) in the optical frame (x right,
# y down, z forward): roll turns about optical +z, pitch about -x, yaw about -y.
FALLBACK_RING_DEG = 0.4  # the HDL-64's spacing
BODY_IN_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]).T


@dataclass(frozen=True)
class EdgeFrame:
    """One frame prepared for scoring."""

    distance: np.ndarray  # (H, W) float32: px to the nearest image edge
    points: np.ndarray  # (M, 3) depth-edge points in the camera optical frame, float64
    weights: np.ndarray  # (M,) sqrt of the range jump, m


@dataclass(frozen=True)
class CalibrationEstimate:
    # How far the calibration in use is turned from the camera as it is, about the
    # camera's body axes (a camera knocked by +a under an unchanged calibration reads -a).
    rotation_deg: dict[str, float]
    rotation_sigma_deg: dict[str, float]
    agreement: float  # mean edge value at the depth edges, calibration as it is
    agreement_corrected: float  # ... after the suggested correction
    frames: int
    points: int


def rotation_about_body(angles_deg: np.ndarray) -> np.ndarray:
    """The 3x3 rotation (optical frame) of the camera turned by (roll, pitch, yaw) deg
    about its body axes."""
    body = Rotation.from_euler("xyz", np.asarray(angles_deg, float), degrees=True).as_matrix()
    return BODY_IN_OPTICAL @ body @ BODY_IN_OPTICAL.T


def perturbed_extrinsic(T_cam_x: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """T_cam_x of a camera turned by ``angles_deg`` (roll, pitch, yaw) about its body
    axes: a calibration turned by construction (``--rotate``, the tests)."""
    R = rotation_about_body(angles_deg)
    out = np.array(T_cam_x, dtype=np.float64)
    out[:3] = R.T @ out[:3]  # the camera turned by R sees points turned by R^-1
    return out


def edge_distance(bgr: np.ndarray) -> np.ndarray:
    """Pixels to the nearest image edge: Canny edges, thresholds from the median
    intensity. The edge map at a scale sigma is exp(-distance / sigma)."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    gray = cv2.GaussianBlur(gray, (5, 5), 1.2)
    median = float(np.median(gray))
    edges = cv2.Canny(gray, max(10.0, 0.66 * median), min(255.0, 1.33 * median + 20))
    return cv2.distanceTransform((edges == 0).astype(np.uint8), cv2.DIST_L2, 3)


def lidar_rings(elevation_deg: np.ndarray, resolution_deg: float = 0.05) -> np.ndarray:
    """Ring index of each point. Where the lasers' elevations are distinct (runs of
    occupied elevation bins separated by empty ones, none holding more than 8 % of the
    points: 16 beams or more), each run is a ring, so any beam layout works; where
    they overlap (a 64-beam lidar's lower block), bins of ``FALLBACK_RING_DEG``."""
    bins = np.round(elevation_deg / resolution_deg).astype(np.int64)
    lo = int(bins.min())
    counts = np.bincount(bins - lo)
    occupied = counts >= max(2, int(0.0005 * bins.size))
    runs = np.cumsum(occupied & ~np.concatenate([[False], occupied[:-1]]))
    ring = runs[bins - lo] * 2 + ~occupied[bins - lo]  # sparse stray bins: rings apart
    if np.bincount(ring).max() > 0.08 * ring.size:
        return np.round(elevation_deg / FALLBACK_RING_DEG).astype(np.int64)
    return ring


def _ring_above(ring: np.ndarray, azimuth: np.ndarray, max_gap_deg: float) -> np.ndarray:
    """For points sorted by (ring, azimuth): the position of the nearest-azimuth point
    of the ring above (-1: none within ``max_gap_deg``)."""
    above = np.full(ring.size, -1)
    bounds = np.flatnonzero(np.diff(ring)) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, ring.size]
    for a0, a1, b0, b1 in zip(starts[:-1], ends[:-1], starts[1:], ends[1:], strict=True):
        az_a, az_b = azimuth[a0:a1], azimuth[b0:b1]
        hi = np.clip(np.searchsorted(az_b, az_a), 0, az_b.size - 1)
        lo = np.maximum(hi - 1, 0)
        k = np.where(np.abs(az_b[lo] - az_a) < np.abs(az_b[hi] - az_a), lo, hi)  # nearest
        above[a0:a1] = np.where(np.abs(az_b[k] - az_a) <= max_gap_deg, b0 + k, -1)
    return above


def depth_edges(
    xyz: np.ndarray,
    min_jump_m: float = 0.5,
    max_gap_deg: float = 0.6,
    min_ratio: float = 1.5,
    max_top_m: float = 35.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth edges: (M, 3) points and weights (sqrt of the jump, capped at 3 m). A point
    nearer than its neighbour along the ring (by ``min_jump_m``) or than the ring above
    is on an object's silhouette, which lies somewhere between the two beams: the edge
    point is put at its range on the ray halfway between them (else every edge would
    sit half a beam spacing inside its object, a bias of half the ring spacing in pitch)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    rng = np.linalg.norm(xyz, axis=1)
    keep = rng > 1.0
    if keep.sum() < 3:
        return np.zeros((0, 3)), np.zeros(0)
    p, r = xyz[keep], rng[keep]
    ring = lidar_rings(np.degrees(np.arcsin(p[:, 2] / r)))
    azimuth = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
    order = np.lexsort((azimuth, ring))
    ring, azimuth, r, p = ring[order], azimuth[order], r[order], p[order]
    n = r.size
    same = (ring[1:] == ring[:-1]) & (np.abs(azimuth[1:] - azimuth[:-1]) <= max_gap_deg)
    jump, partner = np.zeros(n), np.full(n, -1)
    diff = r[1:] - r[:-1]  # > 0: the next point is farther
    for sel, fg, bg, size in (
        (same & (diff > 0), np.arange(n - 1), np.arange(1, n), diff),  # next is farther
        (same & (diff < 0), np.arange(1, n), np.arange(n - 1), -diff),  # previous is
    ):
        better = sel & (size > jump[fg])
        jump[fg[better]], partner[fg[better]] = size[better], bg[better]
    # The ring above: horizontal edges (roof lines, the tops of cars), which the pitch
    # needs. Up a ring the ground's range grows by itself, by a factor 1 + r * spacing /
    # height that passes ``min_ratio`` far out (45 m for a 32-beam lidar 1.7 m up): only
    # points nearer than ``max_top_m`` are tops.
    above = _ring_above(ring, azimuth, max_gap_deg)
    up = np.where(above >= 0, r[np.maximum(above, 0)], np.nan)
    top = (above >= 0) & (up > min_ratio * r) & (r < max_top_m) & (up - r > jump)
    jump[top], partner[top] = (up - r)[top], above[top]
    edge = np.flatnonzero(jump >= min_jump_m)
    mid = p[edge] / r[edge, None] + p[partner[edge]] / r[partner[edge], None]
    mid *= (r[edge] / np.linalg.norm(mid, axis=1))[:, None]
    return mid, np.sqrt(np.minimum(jump[edge], 3.0))


def edge_frame(bgr: np.ndarray, xyz_lidar: np.ndarray, T_cam_lidar: np.ndarray) -> EdgeFrame:
    """A frame's edge map and depth edges in the optical frame (the extrinsic in use)."""
    p, weights = depth_edges(xyz_lidar)
    cam = p @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    front = cam[:, 2] > 1.0
    return EdgeFrame(edge_distance(bgr), cam[front], weights[front])


def _sample(edges: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear values of a (H, W) map at (M, 2) pixel positions inside the image
    (pixel centres at integer coordinates, as in OpenCV and CameraInfo)."""
    h, w = edges.shape
    u = np.clip(uv[:, 0], 0, w - 1.001)
    v = np.clip(uv[:, 1], 0, h - 1.001)
    u0, v0 = u.astype(np.int64), v.astype(np.int64)
    fu, fv = u - u0, v - v0
    top = edges[v0, u0] * (1 - fu) + edges[v0, u0 + 1] * fu
    bottom = edges[v0 + 1, u0] * (1 - fu) + edges[v0 + 1, u0 + 1] * fu
    return top * (1 - fv) + bottom * fv


def agreement(
    frames: list[EdgeFrame], camera: CameraModel, angles_deg: np.ndarray, sigma_px: float = 3.0
) -> float:
    """Weighted mean edge value (scale ``sigma_px``) at the depth edges, the camera
    turned back by ``angles_deg``."""
    T = np.eye(4)
    T[:3, :3] = rotation_about_body(angles_deg)  # undo a camera turned by angles_deg
    total = weight = 0.0
    for f in frames:
        proj = project_points(f.points, T, camera, rectified=camera.is_rectified, min_depth=1.0)
        if proj.index.size:
            value = np.exp(-_sample(f.distance, proj.uv) / sigma_px)
            total += float(np.sum(f.weights[proj.index] * value))
        weight += float(np.sum(f.weights))
    return total / weight if weight > 0 else 0.0


# (step deg, edge scale px), coarse to fine: wide edges first, so that the search is not
# caught by the nearest edge.
SCALES = ((0.8, 12.0), (0.4, 6.0), (0.2, 3.0), (0.1, 3.0), (0.05, 3.0))
NEIGHBOURS = np.array(np.meshgrid(*[[-1.0, 0.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T
NEIGHBOURS = NEIGHBOURS[np.any(NEIGHBOURS != 0, axis=1)]


def _descend(
    frames: list[EdgeFrame],
    camera: CameraModel,
    max_deg: float,
    x0: np.ndarray,
    scales: tuple[tuple[float, float], ...] = SCALES,
) -> tuple[np.ndarray, float]:
    """From ``x0``, at each scale, move to the best of the 26 neighbours (every axis
    -step, 0, +step together) until none is better; the angles and their fine score."""
    x = np.array(x0, dtype=np.float64)
    for step, sigma in scales:
        best = agreement(frames, camera, x, sigma)
        for _ in range(12):
            trials = [t for t in x + NEIGHBOURS * step if np.all(np.abs(t) <= max_deg)]
            scores = [agreement(frames, camera, t, sigma) for t in trials]
            k = int(np.argmax(scores))
            if scores[k] <= best:
                break
            x, best = trials[k], scores[k]
    return x, best


def _search(
    frames: list[EdgeFrame], camera: CameraModel, max_deg: float
) -> tuple[np.ndarray, float]:
    """The better of two descents: from no correction, and from each axis's best on a
    scan of its own (at the middle scale). On the coarse scale the score is flat enough
    that a descent from zero can take a diagonal into another basin (a 2 deg yaw error
    on KITTI ended at roll -2, yaw -2); the scan starts in the right one. Never worse
    than no correction."""
    grid = np.arange(-max_deg, max_deg + 1e-9, 0.4)
    scan = np.zeros(3)
    for axis in range(3):
        trials = np.zeros((grid.size, 3))
        trials[:, axis] = grid
        scores = [agreement(frames, camera, t, SCALES[1][1]) for t in trials]
        scan[axis] = grid[int(np.argmax(scores))]
    runs = [
        _descend(frames, camera, max_deg, np.zeros(3)),
        _descend(frames, camera, max_deg, scan, SCALES[2:]),  # from the scan, finer only
    ]
    x, best = max(runs, key=lambda run: run[1])
    start = agreement(frames, camera, np.zeros(3))
    return (x, best) if best >= start else (np.zeros(3), start)


def estimate(
    frames: list[EdgeFrame], camera: CameraModel, max_deg: float = 3.0
) -> CalibrationEstimate:
    """The rotation that best aligns the window's depth edges with its image edges, with
    the spread of the even and odd frames' estimates (NaN with fewer than 4 frames)."""
    x, best = _search(frames, camera, max_deg)
    if len(frames) >= 4:
        halves = [_search(frames[k::2], camera, max_deg)[0] for k in (0, 1)]
        sigma = np.abs(halves[0] - halves[1]) / 2.0 + 0.05  # + half the finest step
    else:
        sigma = np.full(3, np.nan)
    return CalibrationEstimate(
        rotation_deg={a: round(float(v), 3) for a, v in zip(AXES, x, strict=True)},
        rotation_sigma_deg={a: round(float(v), 3) for a, v in zip(AXES, sigma, strict=True)},
        agreement=round(agreement(frames, camera, np.zeros(3)), 5),
        agreement_corrected=round(best, 5),
        frames=len(frames),
        points=int(sum(f.points.shape[0] for f in frames)),
    )
