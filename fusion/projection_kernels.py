"""Projection's per-point loops, compiled with numba like ``kernels`` (same rules: one
core, no fastmath, the GIL released, cached on disk): the frustum crop, the ground
clearance gather and the projection through R and P or K and D (``distort_point``: the
one implementation of OpenCV's distortion models here).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NO_DISTORTION, EQUIDISTANT, POLYNOMIAL = 0, 1, 2


@njit(cache=True, nogil=True)
def distort_point(x: float, y: float, model: int, d: np.ndarray) -> tuple[float, float]:
    """Normalised undistorted -> distorted coordinates, as OpenCV's models: ``EQUIDISTANT``
    (fisheye, k1..k4) or ``POLYNOMIAL`` (plumb_bob and rational_polynomial: k1, k2, p1, p2,
    k3, k4, k5, k6, s1..s4 in ``d``, zeros where the model has fewer)."""
    if model == EQUIDISTANT:
        r = np.sqrt(x * x + y * y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
        scale = theta_d / r if r > 1e-12 else 1.0
        return x * scale, y * scale
    if model == POLYNOMIAL:
        k1, k2, p1, p2, k3, k4, k5, k6 = d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        s1, s2, s3, s4 = d[8], d[9], d[10], d[11]
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xy = x * y
        xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x) + s1 * r2 + s2 * r2 * r2
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy + s3 * r2 + s4 * r2 * r2
        return xd, yd
    return x, y


@njit(cache=True, nogil=True)
def project(
    points: np.ndarray,
    T: np.ndarray,
    rectify: np.ndarray,
    K: np.ndarray,
    model: int,
    d: np.ndarray,
    fov_limit2: float,
    min_depth: float,
    bounds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, pixels and depths of the points that land in the image (see
    ``projection.project_points``). ``T``: points -> camera optical frame. ``rectify``:
    3x4 (P[:, :3] R | P[:, 3]) for a rectified image, else 0x4 and ``K`` with distortion
    ``model``/``d`` (points off-axis beyond ``fov_limit2``, squared normalised radius,
    dropped first; negative: no limit). ``bounds``: u_min, u_max, v_min, v_max with
    u_min <= u < u_max."""
    n = points.shape[0]
    rows = np.empty(n, np.int64)
    uv = np.empty((n, 2))
    depth = np.empty(n)
    m = 0
    rectified = rectify.shape[0] == 3
    for r in range(n):
        px, py, pz = np.float64(points[r, 0]), np.float64(points[r, 1]), np.float64(points[r, 2])
        c2 = px * T[2, 0] + py * T[2, 1] + pz * T[2, 2] + T[2, 3]
        if not c2 > min_depth:
            continue
        c0 = px * T[0, 0] + py * T[0, 1] + pz * T[0, 2] + T[0, 3]
        c1 = px * T[1, 0] + py * T[1, 1] + pz * T[1, 2] + T[1, 3]
        if rectified:
            w = c0 * rectify[2, 0] + c1 * rectify[2, 1] + c2 * rectify[2, 2] + rectify[2, 3]
            if not w > 0:
                continue
            u = (c0 * rectify[0, 0] + c1 * rectify[0, 1] + c2 * rectify[0, 2] + rectify[0, 3]) / w
            v = (c0 * rectify[1, 0] + c1 * rectify[1, 1] + c2 * rectify[1, 2] + rectify[1, 3]) / w
        else:
            x, y = c0 / c2, c1 / c2
            if fov_limit2 >= 0 and not x * x + y * y <= fov_limit2:
                continue
            x, y = distort_point(x, y, model, d)
            u = K[0, 0] * x + K[0, 1] * y + K[0, 2]
            v = K[1, 1] * y + K[1, 2]
        if u >= bounds[0] and u < bounds[1] and v >= bounds[2] and v < bounds[3]:
            rows[m] = r
            uv[m, 0], uv[m, 1] = u, v
            depth[m] = c2
            m += 1
    return rows[:m], uv[:m], depth[:m]


@njit(cache=True, nogil=True)
def frustum_rows(
    points: np.ndarray, A: np.ndarray, min_depth: float, bounds: np.ndarray, cone2: float
) -> np.ndarray:
    """Rows of the points that may reach the image (see ``projection.frustum_candidates``):
    depth (``bounds[4:8]``: the optical frame's z row) above ``min_depth`` and, with
    (a, b, w) = A [p 1], either a^2 + b^2 <= ``cone2`` w^2 (``cone2`` >= 0) or w > 0 and
    bounds[0] w <= a <= bounds[1] w, bounds[2] w <= b <= bounds[3] w."""
    n = points.shape[0]
    rows = np.empty(n, np.int64)
    m = 0
    for r in range(n):
        px, py, pz = np.float64(points[r, 0]), np.float64(points[r, 1]), np.float64(points[r, 2])
        if not px * bounds[4] + py * bounds[5] + pz * bounds[6] + bounds[7] > min_depth:
            continue
        a = px * A[0, 0] + py * A[0, 1] + pz * A[0, 2] + A[0, 3]
        b = px * A[1, 0] + py * A[1, 1] + pz * A[1, 2] + A[1, 3]
        w = px * A[2, 0] + py * A[2, 1] + pz * A[2, 2] + A[2, 3]
        if cone2 >= 0:
            ok = a * a + b * b <= cone2 * (w * w)
        else:
            ok = w > 0 and bounds[0] * w <= a <= bounds[1] * w
            ok = ok and bounds[2] * w <= b <= bounds[3] * w
        if ok:
            rows[m] = r
            m += 1
    return rows[:m]


@njit(cache=True, nogil=True)
def gather_above(
    points: np.ndarray, rows: np.ndarray, normal: np.ndarray, d: float, clearance: float
) -> np.ndarray:
    """``points[rows]`` as float64, only those more than ``clearance`` above the plane
    n . p + d = 0 (all of them when ``normal`` is empty)."""
    out = np.empty((rows.size, 3))
    m = 0
    check = normal.size == 3
    for k in range(rows.size):
        r = rows[k]
        x, y, z = np.float64(points[r, 0]), np.float64(points[r, 1]), np.float64(points[r, 2])
        if check and not x * normal[0] + y * normal[1] + z * normal[2] + d > clearance:
            continue
        out[m, 0], out[m, 1], out[m, 2] = x, y, z
        m += 1
    return out[:m]


def points_for_kernels(points: np.ndarray) -> np.ndarray:
    """(N, 3) points as the kernels are compiled for them (``kernels.warm_up``): float32 or
    float64, writable, in C order or a row-strided view (a decoded PointCloud2's x, y, z)
    as given; another dtype, a read-only or a Fortran-order array is copied, so that no
    call compiles anew (numba compiles per dtype, layout and writability)."""
    pts = np.asarray(points).reshape(-1, 3)
    if pts.dtype not in (np.float32, np.float64):
        return np.array(pts, dtype=np.float64)
    if not pts.flags.writeable or (pts.flags.f_contiguous and not pts.flags.c_contiguous):
        return np.array(pts, order="C")
    return pts
