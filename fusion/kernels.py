"""The per-point loops of the fusion path, compiled with numba (one core, no fastmath).

Each kernel computes what a numpy expression elsewhere in ``fusion`` describes, in one
pass instead of a chain of temporaries: selections decide exactly as the numpy they
replace (comparisons in float64, no reassociation, no fused multiply-add), sums may add
in another order (differences of a few ulps). Compiled on first use and cached on disk
(``cache=True``: numba's ``__pycache__``, or its user-wide cache where the package
directory is read-only), so a process pays the compile once per installation.
"""

from __future__ import annotations

import numpy as np
from numba import njit


# -- ground plane (ground.fit_ground) -----------------------------------------------------
@njit(cache=True)
def near_heights(points: np.ndarray, max_x: float, max_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows with |x| < max_x and |y| < max_y (compared in float64), and their z as float64."""
    n = points.shape[0]
    rows = np.empty(n, np.int64)
    z = np.empty(n, np.float64)
    m = 0
    for r in range(n):
        if abs(np.float64(points[r, 0])) < max_x and abs(np.float64(points[r, 1])) < max_y:
            rows[m] = r
            z[m] = points[r, 2]
            m += 1
    return rows[:m], z[:m]


@njit(cache=True)
def gather_below(points: np.ndarray, rows: np.ndarray, z: np.ndarray, limit: float) -> np.ndarray:
    """``points[rows[z < limit]]`` as float64."""
    out = np.empty((rows.size, 3), np.float64)
    m = 0
    for k in range(rows.size):
        if z[k] < limit:
            r = rows[k]
            out[m, 0] = points[r, 0]
            out[m, 1] = points[r, 1]
            out[m, 2] = points[r, 2]
            m += 1
    return out[:m]


@njit(cache=True)
def plane_hypotheses(sample: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (pointing up) and offsets of the planes through the sample's point
    triples ``idx`` whose normal is within ~25 degrees of vertical (n_z > 0.9); degenerate
    triples (|cross| <= 1e-6) are skipped. As numpy's cross, norm and sign would give."""
    h = idx.shape[0]
    normals = np.empty((h, 3), np.float64)
    d = np.empty(h, np.float64)
    m = 0
    for k in range(h):
        a, b, c = sample[idx[k, 0]], sample[idx[k, 1]], sample[idx[k, 2]]
        u0, u1, u2 = b[0] - a[0], b[1] - a[1], b[2] - a[2]
        v0, v1, v2 = c[0] - a[0], c[1] - a[1], c[2] - a[2]
        n0 = u1 * v2 - u2 * v1
        n1 = u2 * v0 - u0 * v2
        n2 = u0 * v1 - u1 * v0
        norm = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
        if not norm > 1e-6:
            continue
        n0, n1, n2 = n0 / norm, n1 / norm, n2 / norm
        sign = np.sign(n2 + 1e-12)
        n0, n1, n2 = n0 * sign, n1 * sign, n2 * sign
        if not n2 > 0.9:
            continue
        normals[m, 0], normals[m, 1], normals[m, 2] = n0, n1, n2
        d[m] = -(n0 * a[0] + n1 * a[1] + n2 * a[2])
        m += 1
    return normals[:m], d[:m]


@njit(cache=True)
def best_plane(sample: np.ndarray, normals: np.ndarray, d: np.ndarray, threshold: float) -> int:
    """Index of the plane with the most sample points within ``threshold`` (the first on
    a tie, as ``np.argmax``)."""
    best, best_count = 0, -1
    for k in range(normals.shape[0]):
        n0, n1, n2, dk = normals[k, 0], normals[k, 1], normals[k, 2], d[k]
        count = 0
        for r in range(sample.shape[0]):
            if abs(sample[r, 0] * n0 + sample[r, 1] * n1 + sample[r, 2] * n2 + dk) < threshold:
                count += 1
        if count > best_count:
            best, best_count = k, count
    return best


@njit(cache=True)
def inlier_moments(
    points: np.ndarray, normal: np.ndarray, d: float, threshold: float
) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, sum and sum of outer products of the points within ``threshold`` of the
    plane: the inliers' centroid and scatter without gathering them."""
    total = np.zeros(3)
    outer = np.zeros((3, 3))
    count = 0
    for r in range(points.shape[0]):
        x, y, z = points[r, 0], points[r, 1], points[r, 2]
        if abs(x * normal[0] + y * normal[1] + z * normal[2] + d) < threshold:
            count += 1
            total[0] += x
            total[1] += y
            total[2] += z
            outer[0, 0] += x * x
            outer[0, 1] += x * y
            outer[0, 2] += x * z
            outer[1, 1] += y * y
            outer[1, 2] += y * z
            outer[2, 2] += z * z
    outer[1, 0], outer[2, 0], outer[2, 1] = outer[0, 1], outer[0, 2], outer[1, 2]
    return count, total, outer


# -- DBSCAN (fusion3d.dbscan) -------------------------------------------------------------
@njit(cache=True)
def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def dbscan_labels(points: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """DBSCAN labels with open3d's semantics (see ``fusion3d.dbscan``).

    Neighbour pairs come from a sweep along x over the points sorted by x: once two
    points are ``eps`` apart in x they cannot be neighbours (``dx * dx >= eps * eps``
    then, in rounded arithmetic too). The pair test is written without a branch (every
    candidate is stored, the count advances only for neighbours): a box's points are
    dense, and a mispredicted branch per candidate cost more than the test itself."""
    n = points.shape[0]
    labels = np.full(n, -1, np.int32)
    if n == 0:
        return labels
    order = np.argsort(points[:, 0])
    xs = np.empty(n)
    ys = np.empty(n)
    zs = np.empty(n)
    for a in range(n):
        xs[a], ys[a], zs[a] = points[order[a], 0], points[order[a], 1], points[order[a], 2]
    eps2 = eps * eps
    cap = 16 * n
    first = np.empty(cap, np.int64)  # pairs as positions in x order, first < second
    second = np.empty(cap, np.int64)
    m = 0
    for a in range(n):
        if cap - m < n - a:  # room for every candidate of this point
            while cap - m < n - a:
                cap *= 2
            first = np.concatenate((first[:m], np.empty(cap - m, np.int64)))
            second = np.concatenate((second[:m], np.empty(cap - m, np.int64)))
        x, y, z = xs[a], ys[a], zs[a]
        for b in range(a + 1, n):
            dx = x - xs[b]
            if -dx >= eps:
                break
            dy = y - ys[b]
            dz = z - zs[b]
            first[m] = a
            second[m] = b
            m += dx * dx + dy * dy + dz * dz < eps2
    # Core points: at least min_points neighbours, the point itself included.
    degree = np.ones(n, np.int64)
    for e in range(m):
        degree[first[e]] += 1
        degree[second[e]] += 1
    core = np.empty(n, np.bool_)  # by point index
    for a in range(n):
        core[order[a]] = degree[a] >= min_points
    # Clusters: components of the core points, each rooted at its lowest index (the
    # larger root is linked under the smaller), numbered in the order of those roots.
    parent = np.arange(n)
    for e in range(m):
        i, j = order[first[e]], order[second[e]]
        if core[i] and core[j]:
            ri, rj = _root(parent, i), _root(parent, j)
            if ri < rj:
                parent[rj] = ri
            elif rj < ri:
                parent[ri] = rj
    cluster = 0
    for i in range(n):
        if core[i] and _root(parent, i) == i:
            labels[i] = cluster
            cluster += 1
    for i in range(n):
        if core[i]:
            labels[i] = labels[_root(parent, i)]
    # Border points: the lowest cluster among their core neighbours.
    for e in range(m):
        i, j = order[first[e]], order[second[e]]
        if core[i] != core[j]:
            border, label = (j, labels[i]) if core[i] else (i, labels[j])
            if labels[border] < 0 or label < labels[border]:
                labels[border] = label
    return labels


# -- projection (projection.project_points, projection.frustum_candidates) ------------------
NO_DISTORTION, EQUIDISTANT, POLYNOMIAL = 0, 1, 2


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def rows_in_box(uv: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """Rows (ascending) of the pixels with x1 <= u < x2 and y1 <= v < y2."""
    rows = np.empty(uv.shape[0], np.int64)
    m = 0
    for k in range(uv.shape[0]):
        u, v = uv[k, 0], uv[k, 1]
        if u >= x1 and u < x2 and v >= y1 and v < y2:
            rows[m] = k
            m += 1
    return rows[:m]
