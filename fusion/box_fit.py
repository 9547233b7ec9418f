"""Vehicle footprints from partial lidar views: an L-shape rectangle fit in bird's-eye view.

The lidar sees a vehicle's near faces only: one face (straight ahead or behind) or two
(an L, seen at an angle). The centroid of those points, or the centre of their
minimum-area rectangle, sits on the near side (KITTI cars: ~0.6 m median). Here the
orientation comes from a search over headings that maximises Zhang et al.'s closeness
criterion ("Efficient L-Shape Fitting for Vehicle Detection Using Laser Scanners", IV
2017): the points' distances to the nearer of each axis' two edges, scored by their
inverse, so the rectangle whose edges the points lie on wins. Then the visible edges stay
where they are, and each side shorter than the class's typical size is grown away from
the sensor (the far side is never seen). Which side is the length is decided by the class
size prior and by the camera: the whole footprint, seen from the camera, should span the
2D box's bearings (``bearing_span``), so a face taken for the wrong side of the car makes
a footprint much wider or narrower than the box. Without a camera, the seen sides' likeness
to the prior decides (a lone face as long as the class's width is an end face).

Pure functions of numpy arrays in base_link (REP 103: x forward, z up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COARSE_HEADINGS = np.deg2rad(np.arange(0.0, 90.0, 6.0))  # a rectangle repeats every 90 deg
MAX_SEARCH_POINTS = 120
MIN_DISTANCE_M = 0.05  # Zhang's d0 (0.01 there): at lidar range noise (~3 cm) 0.01 let a few
# points that happen to lie on an edge pick the heading (4-5 deg off at 6 m, tested)
MIN_FIT_POINTS = 8  # fewer: no edge is defined; the caller keeps its simpler fit
WIDTH_SLACK_M = 0.4  # a face this much wider than the class's width is not its width
LENGTH_SLACK = 1.5  # ... nor this many times longer than its length
SEEN_WHOLE = 0.85  # of a prior side: shorter than this, the rest is hidden
SIZE_WEIGHT = 0.5  # seen sides against the prior, below the camera's bearings' say


@dataclass(frozen=True)
class RectangleFit:
    center: np.ndarray  # (2,) bird's-eye centre, base_link
    length: float
    width: float
    yaw: float  # of the length axis, in (-pi/2, pi/2]: a footprint has no front


def best_heading(xy: np.ndarray) -> tuple[float, float]:
    """The heading in [0, pi/2) whose rectangle the points hug best (closeness criterion),
    to 1 degree, and its score per point: every 6 degrees, then each degree around the
    best (the criterion is smooth at ``MIN_DISTANCE_M``; 15 + 11 headings, not 90), on
    at most ``MAX_SEARCH_POINTS`` points (every k-th: a dense car has 500)."""
    if len(xy) > MAX_SEARCH_POINTS:
        xy = xy[:: -(-len(xy) // MAX_SEARCH_POINTS)]
    coarse, score = _best_of(xy, COARSE_HEADINGS)
    fine = (coarse + np.deg2rad(np.arange(-5.0, 6.0, 1.0))) % (np.pi / 2)
    heading, score = _best_of(xy, fine)
    return heading, score / max(len(xy), 1)


def _best_of(xy: np.ndarray, headings: np.ndarray) -> tuple[float, float]:
    c, s = np.cos(headings), np.sin(headings)
    along = xy[:, :1] * c + xy[:, 1:2] * s  # (N, K)
    across = -xy[:, :1] * s + xy[:, 1:2] * c
    d1, d2 = _edge_distance(along), _edge_distance(across)
    score = (1.0 / np.maximum(np.minimum(d1, d2), MIN_DISTANCE_M)).sum(axis=0)
    k = int(np.argmax(score))
    return float(headings[k]), float(score[k])


def _edge_distance(e: np.ndarray) -> np.ndarray:
    """Per point and heading: distance to the edge (min or max) the points are nearer to
    as a whole (Zhang: the edge chosen by the norm of all points' distances)."""
    lo = e - e.min(axis=0)
    hi = e.max(axis=0) - e
    use_lo = np.einsum("nk,nk->k", lo, lo) <= np.einsum("nk,nk->k", hi, hi)
    return np.where(use_lo, lo, hi)


def _grow(lo: float, hi: float, want: float, sensor: float) -> tuple[float, float]:
    """An interval [lo, hi] on one axis grown to ``want`` away from the sensor: the edge
    nearer the sensor was seen and stays. An interval of at least ``SEEN_WHOLE`` of the
    prior was seen whole (a 7.4 m truck is not grown to the 8 m prior: that moved its centre
    0.3 m). With the sensor between the edges (the face
    across the line of sight: both ends seen), it grows evenly."""
    have = hi - lo
    if have >= SEEN_WHOLE * want:  # seen end to end: the vehicle is this long
        return lo, hi
    if lo > sensor:
        return lo, lo + want
    if hi < sensor:
        return hi - want, hi
    grow = (want - have) / 2
    return lo - grow, hi + grow


def _span_mismatch(
    corners: np.ndarray, camera_xy: np.ndarray, bearing_span: tuple[float, float]
) -> float:
    """How far the footprint's bearings, seen from the camera, are from the 2D box's
    (left and right edge bearings), relative to the box's own angular width."""
    b0, b1 = bearing_span
    half = abs(_wrap(b1 - b0)) / 2  # across +-pi too (a rear camera)
    mid = b0 + _wrap(b1 - b0) / 2
    rel = _wrap(np.arctan2(corners[:, 1] - camera_xy[1], corners[:, 0] - camera_xy[0]) - mid)
    return float(abs(rel.min() + half) + abs(rel.max() - half)) / max(2 * half, 1e-3)


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def fit_rectangle(
    xy: np.ndarray,
    prior_lw: tuple[float, float],
    sensor_xy: np.ndarray,
    camera_xy: np.ndarray | None = None,
    bearing_span: tuple[float, float] | None = None,
) -> RectangleFit | None:
    """The footprint of a vehicle from its visible bird's-eye points ``xy`` (N, 2): the
    closeness-criterion heading, visible edges kept, short sides grown to ``prior_lw``
    (length, width) away from ``sensor_xy`` (the lidar's origin). ``bearing_span`` (radians:
    the bearings of the 2D box's two side edges, either order, the box narrower than pi)
    from ``camera_xy`` picks which side is the length when the prior alone cannot. None
    with fewer than ``MIN_FIT_POINTS`` points."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < MIN_FIT_POINTS:
        return None
    origin = xy.mean(axis=0)  # numerics: headings rotate about the points, not the sensor
    local = xy - origin
    heading, _ = best_heading(local)
    c, s = math.cos(heading), math.sin(heading)
    axes = np.array([[c, s], [-s, c]])  # rows: axis 1 (heading), axis 2 (heading + 90)
    e = local @ axes.T
    sensor = (np.asarray(sensor_xy, float) - origin) @ axes.T
    bounds = [(float(e[:, k].min()), float(e[:, k].max())) for k in (0, 1)]
    prior_l, prior_w = prior_lw
    span = bearing_span if camera_xy is not None else None
    best: tuple[float, np.ndarray, float, float, float] | None = None
    for length_axis in (0, 1):
        want = (prior_l, prior_w) if length_axis == 0 else (prior_w, prior_l)
        grown = [_grow(*bounds[k], want[k], float(sensor[k])) for k in (0, 1)]
        seen_l = bounds[length_axis][1] - bounds[length_axis][0]
        seen_w = bounds[1 - length_axis][1] - bounds[1 - length_axis][0]
        cost = 2.0 * max(0.0, seen_w - prior_w - WIDTH_SLACK_M)
        cost += max(0.0, seen_l - LENGTH_SLACK * prior_l)
        # Seen sides like the prior's: a lone face as long as the width is an end face.
        cost += SIZE_WEIGHT * (abs(seen_l - prior_l) / prior_l + abs(seen_w - prior_w) / prior_w)
        centre_local = np.array([0.5 * (g[0] + g[1]) for g in grown]) @ axes
        if span is not None:
            corners = np.array([[grown[0][i], grown[1][j]] for i in (0, 1) for j in (0, 1)])
            corners = corners @ axes + origin
            cost += _span_mismatch(corners, np.asarray(camera_xy, float), span)
        length = grown[length_axis][1] - grown[length_axis][0]
        width = grown[1 - length_axis][1] - grown[1 - length_axis][0]
        yaw = heading + (math.pi / 2 if length_axis == 1 else 0.0)
        if best is None or cost < best[0]:
            best = (cost, centre_local + origin, length, width, yaw)
    assert best is not None
    _, centre, length, width, yaw = best
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    if yaw <= -math.pi / 2:
        yaw += math.pi
    elif yaw > math.pi / 2:
        yaw -= math.pi
    return RectangleFit(centre, float(length), float(width), yaw)
