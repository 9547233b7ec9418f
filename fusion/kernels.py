"""The per-point loops of the fusion path, compiled with numba (one core, no fastmath,
the GIL released: the model workers' Python threads run meanwhile); projection's are in
``projection_kernels``.

Each kernel computes what a numpy expression elsewhere in ``fusion`` describes, in one
pass instead of a chain of temporaries: the same comparisons, in float64, on values that
may differ from numpy's by an ulp (a dot product summed term by term where numpy's BLAS
may order it otherwise), so only a point within an ulp of a threshold can fall the other
way; ``test_fast_path`` holds whole bags to the same outputs. Compiled on first use and
cached on disk (``cache=True``: numba's ``__pycache__``, or its user-wide cache where the
package directory is read-only), so a process pays the compile once per installation. A
kernel calls only kernels of its own file: numba renews a cached kernel when its own file
changes, not when a callee's does.
"""

from __future__ import annotations

import numpy as np
from numba import njit


# -- ground plane (ground.fit_ground) -----------------------------------------------------
@njit(cache=True, nogil=True)
def _near(x: float, y: float, z: float, max_x: float, max_y: float) -> bool:
    return abs(np.float64(x)) < max_x and abs(np.float64(y)) < max_y and np.isfinite(z)


@njit(cache=True, nogil=True)
def near_heights(points: np.ndarray, max_x: float, max_y: float) -> np.ndarray:
    """z of the points with |x| < max_x and |y| < max_y (compared in float64) and a finite
    z, in the cloud's dtype (a float32 cloud's heights partition in 2/3 of the time)."""
    n = points.shape[0]
    z = np.empty(n, points.dtype)
    m = 0
    for r in range(n):
        if _near(points[r, 0], points[r, 1], points[r, 2], max_x, max_y):
            z[m] = points[r, 2]
            m += 1
    return z[:m]


@njit(cache=True, nogil=True)
def gather_below(points: np.ndarray, max_x: float, max_y: float, limit: float) -> np.ndarray:
    """The points ``near_heights`` takes whose z is below ``limit``, as float64, in order
    (tested again rather than gathered by row: writing the rows cost more)."""
    out = np.empty((points.shape[0], 3), np.float64)
    m = 0
    for r in range(points.shape[0]):
        x, y, z = points[r, 0], points[r, 1], points[r, 2]
        if _near(x, y, z, max_x, max_y) and z < limit:
            out[m, 0], out[m, 1], out[m, 2] = x, y, z
            m += 1
    return out[:m]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def best_plane(sample: np.ndarray, normals: np.ndarray, d: np.ndarray, threshold: float) -> int:
    """Index of the plane with the most sample points within ``threshold`` (the first on
    a tie, as ``np.argmax``). The sample is scored column by column (x, y, z contiguous):
    the count over points then runs in SIMD lanes, each point's distance unchanged."""
    xs = np.ascontiguousarray(sample[:, 0])
    ys = np.ascontiguousarray(sample[:, 1])
    zs = np.ascontiguousarray(sample[:, 2])
    best, best_count = 0, -1
    for k in range(normals.shape[0]):
        n0, n1, n2, dk = normals[k, 0], normals[k, 1], normals[k, 2], d[k]
        count = 0
        for r in range(xs.size):
            count += abs(xs[r] * n0 + ys[r] * n1 + zs[r] * n2 + dk) < threshold
        if count > best_count:
            best, best_count = k, count
    return best


@njit(cache=True, nogil=True)
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
@njit(cache=True, nogil=True)
def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def dbscan_labels(points: np.ndarray, order: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """DBSCAN labels with open3d's semantics (see ``fusion3d.dbscan``); ``order`` sorts
    the points by x (numpy's argsort: twice as fast as numba's here; any order of ties).

    Neighbour pairs come from a sweep along x over the sorted points: once two points are
    ``eps`` apart in x they cannot be neighbours (``dx * dx >= eps * eps`` then, in
    rounded arithmetic too). The pair test is written without a branch (every candidate
    is stored, the count advances only for neighbours): a box's points are dense, and a
    mispredicted branch per candidate cost more than the test itself. Each point's pairs
    (with later points) are stored from ``start[a]``."""
    n = points.shape[0]
    labels = np.full(n, -1, np.int32)
    if n == 0:
        return labels
    xs = np.empty(n)
    ys = np.empty(n)
    zs = np.empty(n)
    for a in range(n):
        r = order[a]
        xs[a], ys[a], zs[a] = points[r, 0], points[r, 1], points[r, 2]
    eps2 = eps * eps
    cap = 16 * n
    second = np.empty(cap, np.int32)  # the later point of each pair, by position in x order
    start = np.empty(n + 1, np.int64)
    degree = np.ones(n, np.int64)  # neighbours, the point itself included
    m = 0
    end = 0  # the first point eps or more beyond a in x (it only advances with a)
    for a in range(n):
        end = max(end, a + 1)
        while end < n and not xs[end] - xs[a] >= eps:
            end += 1
        if cap - m < end - a:  # room for every candidate of this point
            while cap - m < end - a:
                cap *= 2
            second = np.concatenate((second[:m], np.empty(cap - m, np.int32)))
        start[a] = m
        x, y, z = xs[a], ys[a], zs[a]
        for b in range(a + 1, end):
            dx = x - xs[b]
            dy = y - ys[b]
            dz = z - zs[b]
            second[m] = b
            m += dx * dx + dy * dy + dz * dz < eps2
        degree[a] += m - start[a]
    start[n] = m
    for e in range(m):
        degree[second[e]] += 1
    core = degree >= min_points  # by position in x order, like everything below
    # Clusters: components of the core points (union-find over core pairs, a's root kept
    # at hand), numbered in the order of their lowest point index (open3d's order of
    # first core points).
    parent = np.arange(n)
    for a in range(n):
        if not core[a]:
            continue
        ra = _root(parent, a)
        for e in range(start[a], start[a + 1]):
            b = second[e]
            if core[b] and parent[b] != ra:
                rb = _root(parent, b)
                if rb < ra:
                    parent[ra] = rb
                    ra = rb
                elif rb > ra:
                    parent[rb] = ra
    root = np.full(n, -1, np.int64)
    lowest = np.full(n, n, np.int64)  # per root: the lowest point index in its component
    for a in range(n):
        if core[a]:
            root[a] = _root(parent, a)
            lowest[root[a]] = min(lowest[root[a]], order[a])
    numbered = np.full(n, -1, np.int32)  # point index -> cluster, for components' lowest
    for a in range(n):
        if core[a] and lowest[root[a]] == order[a]:
            numbered[order[a]] = 0
    cluster = 0
    for i in range(n):
        if numbered[i] == 0:
            numbered[i] = cluster
            cluster += 1
        else:
            numbered[i] = -1
    by_position = np.full(n, -1, np.int32)
    for a in range(n):
        if core[a]:
            by_position[a] = numbered[lowest[root[a]]]
    # Border points: the lowest cluster among their core neighbours, found by scanning
    # their x window both ways (they are few; a pair list by point would cost every box).
    for p in range(n):
        if core[p]:
            continue
        x, y, z = xs[p], ys[p], zs[p]
        label = -1
        for step in (1, -1):
            b = p + step
            while 0 <= b < n and not abs(xs[b] - x) >= eps:
                dx, dy, dz = x - xs[b], y - ys[b], z - zs[b]
                near = core[b] and dx * dx + dy * dy + dz * dz < eps2
                if near and (label < 0 or by_position[b] < label):
                    label = by_position[b]
                b += step
        by_position[p] = label
    for a in range(n):
        labels[order[a]] = by_position[a]
    return labels


@njit(cache=True, nogil=True)
def box_points(
    uv: np.ndarray,
    index: np.ndarray,
    depth: np.ndarray,
    points: np.ndarray,
    limits: np.ndarray,
    max_points: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The projected points in a box (x1 <= u < x2, y1 <= v < y2; ``limits[:4]``), every
    k-th one when there are more than ``max_points`` (k = ceil(n / max_points), in
    projection order): their projection rows, 3D points (``points[index]``), depths,
    and whether each lies in the box core (``limits[4:]``: u from, u to, v from, v to)."""
    x1, y1, x2, y2 = limits[0], limits[1], limits[2], limits[3]
    rows = np.empty(uv.shape[0], np.int64)
    n = 0
    for k in range(uv.shape[0]):
        u, v = uv[k, 0], uv[k, 1]
        if u >= x1 and u < x2 and v >= y1 and v < y2:
            rows[n] = k
            n += 1
    step = int(np.ceil(n / max_points)) if n > max_points else 1
    rows = rows[:n:step].copy()
    pts = np.empty((rows.size, 3))
    depths = np.empty(rows.size)
    core = np.empty(rows.size, np.bool_)
    for i in range(rows.size):
        r = rows[i]
        pts[i, 0], pts[i, 1], pts[i, 2] = (
            points[index[r], 0],
            points[index[r], 1],
            points[index[r], 2],
        )
        depths[i] = depth[r]
        u, v = uv[r, 0], uv[r, 1]
        core[i] = u >= limits[4] and u < limits[5] and v >= limits[6] and v < limits[7]
    return rows, pts, depths, core


@njit(cache=True, nogil=True)
def cluster_summary(
    labels: np.ndarray, ok: np.ndarray, core: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster 0..max(labels) (-1 is noise): members, how many are ``ok``, how many
    ``core``, and the medians of ``a`` and ``b`` over its members (``np.median``'s value:
    the middle element, or the mean of the two middle ones)."""
    k = labels.max() + 1 if labels.size else 0
    members = np.zeros(k, np.int64)
    n_ok = np.zeros(k, np.int64)
    n_core = np.zeros(k, np.int64)
    for i in range(labels.size):
        g = labels[i]
        if g >= 0:
            members[g] += 1
            n_ok[g] += ok[i]
            n_core[g] += core[i]
    start = np.zeros(k + 1, np.int64)
    for g in range(k):
        start[g + 1] = start[g] + members[g]
    fill = start[:-1].copy()
    grouped_a = np.empty(start[k])
    grouped_b = np.empty(start[k])
    for i in range(labels.size):
        g = labels[i]
        if g >= 0:
            grouped_a[fill[g]] = a[i]
            grouped_b[fill[g]] = b[i]
            fill[g] += 1
    median_a = np.empty(k)
    median_b = np.empty(k)
    for g in range(k):
        median_a[g] = np.median(grouped_a[start[g] : start[g + 1]])
        median_b[g] = np.median(grouped_b[start[g] : start[g + 1]])
    return members, n_ok, n_core, median_a, median_b


def warm_up() -> float:
    """Compile (first start after an install) or load from the cache every kernel, for
    the argument types the fusion path passes (float32 and float64 clouds), so that no
    frame waits for the compiler. Returns the seconds it took."""
    import time

    from .box_evidence import box_depths, evidence_of_sorted
    from .projection_kernels import POLYNOMIAL, frustum_rows, gather_above, project

    start = time.perf_counter()
    rows = np.zeros(1, np.int64)
    flat = np.zeros(3)
    T = np.eye(4)
    box = np.array([0.0, 1.0, 0.0, 1.0])
    clouds = [np.zeros((1, 3), np.float32), np.zeros((1, 3))]
    clouds += [np.zeros((2, 4), c.dtype)[:, :3] for c in clouds]  # x, y, z of x, y, z, i
    for points in clouds:
        near_heights(points, 1.0, 1.0)
        gather_below(points, 1.0, 1.0, 0.0)
        frustum_rows(points, T[:3].copy(), 0.1, np.zeros(8), -1.0)
        gather_above(points, rows, flat, 0.0, 0.2)
        for rectify in (np.zeros((0, 4)), T[:3].copy()):
            project(points, T, rectify, np.eye(3), POLYNOMIAL, np.zeros(14), 1.0, 0.1, box)
    sample = np.zeros((3, 3))
    plane_hypotheses(sample, np.zeros((1, 3), np.int64))
    best_plane(sample, np.zeros((1, 3)), np.zeros(1), 0.15)
    inlier_moments(sample, flat, 0.0, 0.15)
    labels = dbscan_labels(sample, np.arange(3), 0.6, 3)
    uv = np.zeros((1, 2))
    box_points(uv, np.zeros(1, np.int64), np.zeros(1), sample, np.zeros(8), 500)
    everyone = np.ones(3, np.bool_)
    cluster_summary(labels, everyone, everyone, flat, flat)
    box_depths(np.zeros((1, 8)), uv, np.zeros(1))
    evidence_of_sorted(flat, flat, 8.0, 8)
    return time.perf_counter() - start
