"""3D objects from kept 2D boxes: lidar clusters, or a camera-only ground-plane estimate.

Per frame the lidar ground is removed once (``ground.fit_ground``: a RANSAC plane) and
the remaining points in the camera's frustum are projected into the image. Per kept box:
the projected points inside the box (and on compatible mask pixels when a segmentation is
given) are clustered by DBSCAN (``dbscan``: open3d's labels, compiled, without an open3d
cloud per box); the object's cluster is the one with the most mask-consistent points,
nearer first on a tie. Its bird's-eye footprint gives centre, size and yaw (OpenCV's
minimum-area rectangle); a footprint shorter than the class's typical size is extended
away from the sensor (the far side of an object is never seen). Without lidar points, the
box's bottom centre is cast onto the ground plane from the camera and the class's typical
size is used; such objects are flagged ``camera_only``. Everything is in ``base_link``
(REP 103: x forward, z up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..ros_pkg.camera_info import CameraModel
from .box_fit import fit_rectangle
from .ground import GroundModel, fit_ground
from .kernels import box_points, cluster_summary, dbscan_labels
from .projection import Projection, frustum_candidates, project_points
from .projection_kernels import gather_above, points_for_kernels

# Typical object sizes (length, width, height) for extending partial footprints.
CLASS_SIZE_PRIOR: dict[str, tuple[float, float, float]] = {
    "car": (4.4, 1.8, 1.5),
    "truck": (8.0, 2.5, 3.2),
    "bus": (11.0, 2.5, 3.1),
    "person": (0.6, 0.6, 1.75),
    "bicycle": (1.8, 0.6, 1.7),
    "cyclist": (1.8, 0.6, 1.75),
    "motorcycle": (2.0, 0.8, 1.5),
    "train": (20.0, 3.0, 3.8),
}
DEFAULT_PRIOR = (1.0, 1.0, 1.5)


@dataclass(frozen=True)
class Object3D:
    center: np.ndarray  # (3,) base_link
    size: np.ndarray  # (3,) length, width, height
    yaw: float  # about base_link z
    source: str  # "lidar" or "camera_only"
    points: int  # lidar points in the chosen cluster
    # Sync policy latest: how much older than the frame the lidar sweep is, and whether
    # the centre was carried to the frame's stamp by its track's velocity.
    lidar_age_ms: float = 0.0
    carried_by_track: bool = False
    # How centre, size and yaw were found: "l_shape" (vehicles: ``box_fit``),
    # "min_area_rect" (vehicles with too few points for it), "centroid" (people, bikes),
    # "ground_ray" (camera only).
    fit: str = ""

    @property
    def range_m(self) -> float:
        return float(np.hypot(self.center[0], self.center[1]))


@dataclass
class LidarFrame:
    """The lidar of one synced frame, prepared once for all boxes."""

    points_base: np.ndarray  # (N, 3) non-ground points in base_link
    projection: Projection  # their projection into the camera image
    ground: GroundModel | None
    fy: float = 0.0  # the camera's vertical focal length, px
    sensor_xy: np.ndarray | None = None  # the lidar's origin in base_link (what it sees)
    camera: CameraModel | None = None  # for the bearings of a box's edges
    T_base_cam: np.ndarray | None = None


def points_in_base(points_lidar: np.ndarray, T_base_lidar: np.ndarray) -> np.ndarray:
    """(N, 3) float64 points in base_link (the very numbers when the transform is identity)."""
    pts = np.asarray(points_lidar).reshape(-1, 3)
    if pts.dtype in (np.float32, np.float64) and np.array_equal(T_base_lidar, np.eye(4)):
        return points_for_kernels(pts)  # exact: float64 values of these very numbers
    return pts.astype(np.float64) @ T_base_lidar[:3, :3].T + T_base_lidar[:3, 3]


def prepare_lidar(
    points_lidar: np.ndarray,
    T_base_lidar: np.ndarray,
    T_cam_base: np.ndarray,
    camera: CameraModel,
    ground_clearance: float = 0.2,
    ground: GroundModel | bool | None = True,
) -> LidarFrame:
    """Ground fitted on the whole cloud near the vehicle (behind it too; ``ground``: a
    plane fitted already, for another camera of a rig); everything after works on the
    points that can reach the image (``frustum_candidates``, a superset of what
    ``project_points`` keeps, in the cloud's order), so ``points_base`` holds only those
    non-ground points and the projection indexes them."""
    base = points_in_base(points_lidar, T_base_lidar)
    if ground is True:
        ground = fit_ground(base)
    rows = frustum_candidates(base, T_cam_base, camera)
    plane = isinstance(ground, GroundModel)
    normal, d = (np.array(ground.normal, float), ground.d) if plane else (np.zeros(0), 0.0)
    sub = gather_above(base, rows, normal, float(d), float(ground_clearance))
    return LidarFrame(
        sub, project_points(sub, T_cam_base, camera), ground, float(camera.K[1, 1]),
        np.asarray(T_base_lidar, float)[:2, 3].copy(), camera, np.linalg.inv(T_cam_base),
    )  # fmt: skip


def _footprint(points: np.ndarray, prior: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    # Scalar math in Python floats: numpy's per-call overhead on 2-vectors cost more than
    # the minimum-area rectangle itself.
    (cx, cy), (w_rect, h_rect), angle = cv2.minAreaRect(points[:, :2].astype(np.float32))
    yaw = math.radians(angle)
    length, width = w_rect, h_rect
    if width > length:  # length along the longer side
        length, width = width, length
        yaw += math.pi / 2
    prior_l, prior_w, _ = prior
    if length < 0.6 * prior_l and length < prior_w + 0.5:
        # Only one end face is seen (a vehicle straight ahead or behind): its long side is
        # the face's width, so the object's length runs perpendicular to it.
        yaw += math.pi / 2
        length, width = width, length
    cos, sin = math.cos(yaw), math.sin(yaw)
    # Extend short sides to the prior, away from the sensor (the unseen far side) -- along
    # an axis that points roughly along the line of sight. Across the line of sight both
    # ends are seen, and a short side is grown symmetrically (the centre stays).
    distance = max(math.sqrt(cx * cx + cy * cy), 1e-6)
    sight_x, sight_y = cx / distance, cy / distance
    for (ax, ay), have, want in (((cos, sin), length, prior_l), ((-sin, cos), width, prior_w)):
        along = ax * sight_x + ay * sight_y
        if have < want and abs(along) > 0.5:
            shift = math.copysign(want - have, along) / 2
            cx, cy = cx + ax * shift, cy + ay * shift
    length, width = max(length, prior_l), max(width, prior_w)
    yaw = math.atan2(math.sin(yaw), math.cos(yaw))
    return np.array([cx, cy]), np.array([length, width]), yaw


def dbscan(points: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """DBSCAN labels exactly as open3d's ``PointCloud.cluster_dbscan`` gives them:
    neighbours are the points at squared distance below ``eps**2`` (the point itself
    included); a point with at least ``min_points`` neighbours is a core point; clusters
    are the core points' connected components, numbered in the order of their first core
    point; a border point joins the lowest numbered cluster among its core neighbours;
    the rest is noise (-1). Compiled (``kernels.dbscan_labels``): a dense box's 500
    points (~10k neighbour pairs) cluster in ~0.1 ms, without an open3d cloud per box."""
    pts = np.array(points, dtype=np.float64)  # C order, writable: the compiled signature
    return dbscan_labels(pts, np.argsort(pts[:, 0]), float(eps), int(min_points))


def object_from_lidar(
    box: np.ndarray,
    cls: str,
    frame: LidarFrame,
    mask_ok: np.ndarray | None = None,
    eps: float = 0.6,
    min_points: int = 3,
    max_points: int = 500,
    vehicle_fit: str = "l_shape",
) -> Object3D | None:
    """The object inside ``box`` from the frame's projected lidar; None if no cluster.
    ``vehicle_fit``: ``l_shape`` or ``min_area_rect`` (``_vehicle_footprint``)."""
    proj = frame.projection
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    # The box, and its core (the central half, 20-95 % of the height), in the box's own
    # precision. Dense boxes are thinned deterministically (every k-th point): DBSCAN cost
    # grows faster than linearly, and a few hundred points describe a footprint as well
    # as tens of thousands.
    limits = np.array([x1, y1, x2, y2, x1 + w / 4, x2 - w / 4, y1 + h / 5, y2 - h / 20], float)
    inside, pts, depths, core = box_points(
        proj.uv, proj.index, proj.depth, frame.points_base, limits, int(max_points)
    )
    if inside.size < min_points:
        return None
    labels = dbscan(pts, eps, min_points)
    if labels.max(initial=-1) < 0:
        return None
    ok = mask_ok[inside] if mask_ok is not None else np.ones(inside.size, dtype=bool)
    # The object's cluster is the one the box is centred on: most points projecting into
    # the box core, among clusters mostly on mask-compatible pixels when a mask is given;
    # nearer first on a tie. A car beside the target, or a truck behind a cyclist, only
    # fills the box's sides.
    #
    # A cluster at depth Z makes the box h px tall object h Z / fy metres tall: a cluster
    # at a depth where that height is implausible for the class is background or a
    # neighbour seen through the box.
    prior_h = CLASS_SIZE_PRIOR.get(cls, DEFAULT_PRIOR)[2]
    members, n_ok, n_core, ranges, depth_med = cluster_summary(
        labels, ok, core, np.hypot(pts[:, 0], pts[:, 1]), depths
    )
    candidates = []
    fy = frame.fy  # h stays in the box's precision (float32 boxes: float32 heights)
    summary = (members, n_ok, n_core, ranges, depth_med)
    for label, (size, n_ok_, n_core_, range_, depth_) in enumerate(
        zip(*(column.tolist() for column in summary), strict=True)
    ):
        consistent = n_ok_ >= 0.5 * size
        implied_h = h * depth_ / fy if fy else prior_h
        plausible = 0.4 * prior_h <= implied_h <= 2.5 * prior_h
        candidates.append((not consistent, not plausible, -n_core_, range_, label))
    best = min(candidates)[4]
    cluster = pts[labels == best]
    prior = CLASS_SIZE_PRIOR.get(cls, DEFAULT_PRIOR)
    if prior[0] <= 2.0:
        # People and bikes: a rectangle fit to a few points flips orientation from frame
        # to frame; the centroid, pushed a little away from the sensor (the far side is
        # unseen), is steadier. Heading comes from tracking, not from the footprint.
        # Push measured on labelled KITTI + VoD (26 people/bikes <= 40 m): a tenth of the
        # width is unbiased; a quarter, or "near face + half a depth", put centres too far.
        centroid = cluster[:, :2].mean(axis=0)
        bearing = np.arctan2(centroid[1], centroid[0])
        away = np.array([np.cos(bearing), np.sin(bearing)])
        centre_xy, size_lw, yaw = (
            centroid + away * prior[1] * SMALL_OBJECT_PUSH,
            np.array(prior[:2]),
            float(bearing),
        )
        fit = "centroid"
    else:
        centre_xy, size_lw, yaw, fit = _vehicle_footprint(cluster, prior, box, frame, vehicle_fit)
    z_top = float(cluster[:, 2].max())
    z_bottom = float(cluster[:, 2].min())
    if frame.ground is not None:  # objects stand on the ground
        z_bottom = min(
            z_bottom,
            float(-(frame.ground.d + frame.ground.normal[:2] @ centre_xy) / frame.ground.normal[2]),
        )
    height = max(z_top - z_bottom, 0.3)
    if frame.fy and prior[0] <= 1.0:
        # People: the top beam often passes over the head (centres were 0.13 m low on
        # KITTI + VoD); the box at the cluster's depth gives the height (<= 1.3x prior).
        implied = h * float(depth_med[best]) / frame.fy
        height = max(height, min(implied, 1.3 * prior[2]))
    centre = np.array([centre_xy[0], centre_xy[1], z_bottom + height / 2])
    return Object3D(
        centre,
        np.array([size_lw[0], size_lw[1], height]),
        yaw,
        "lidar",
        int(cluster.shape[0]),
        fit=fit,
    )


def _vehicle_footprint(
    cluster: np.ndarray,
    prior: tuple[float, float, float],
    box: np.ndarray,
    frame: LidarFrame,
    method: str = "l_shape",
) -> tuple[np.ndarray, np.ndarray, float, str]:
    """A vehicle's bird's-eye centre, (length, width) and yaw: the L-shape fit
    (``box_fit``) constrained by the box's bearings; the minimum-area rectangle when the
    cluster has too few points for it, or when ``method`` says so."""
    rect = None
    if method == "l_shape":
        span, camera_xy = None, None
        if frame.camera is not None and frame.T_base_cam is not None:
            v = 0.5 * (float(box[1]) + float(box[3]))
            edges = np.array([[box[0], v], [box[2], v]], float)
            origin, rays = pixel_rays(frame.camera, frame.T_base_cam, edges)
            camera_xy = origin[:2]
            span = (math.atan2(rays[0, 1], rays[0, 0]), math.atan2(rays[1, 1], rays[1, 0]))
        sensor_xy = frame.sensor_xy if frame.sensor_xy is not None else np.zeros(2)
        rect = fit_rectangle(cluster[:, :2], prior[:2], sensor_xy, camera_xy, span)
    if rect is None:
        centre_xy, size_lw, yaw = _footprint(cluster, prior)
        return centre_xy, size_lw, yaw, "min_area_rect"
    return rect.center, np.array([rect.length, rect.width]), rect.yaw, "l_shape"


def pixel_rays(
    camera: CameraModel, T_base_cam: np.ndarray, uv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The camera centre and the rays through pixels ``uv`` (M, 2), in base_link (through
    R and P for a rectified image, K and D for a raw one: ``CameraModel.is_rectified``)."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    origin_cam = np.zeros(3)
    if camera.is_rectified:  # P = P3 [I | P3^-1 p4] on the rectified frame (R: cam -> rect)
        homog = np.hstack([uv, np.ones((len(uv), 1))])
        rays_cam = np.linalg.solve(camera.P[:, :3], homog.T).T @ camera.R
        origin_cam = -camera.R.T @ np.linalg.solve(camera.P[:, :3], camera.P[:, 3])
    else:
        d = camera.D if camera.distortion_model != "equidistant" else None
        und = cv2.undistortPoints(uv[:, None, :], camera.K, d).reshape(-1, 2)
        rays_cam = np.hstack([und, np.ones((len(und), 1))])
    return (
        T_base_cam[:3, :3] @ origin_cam + T_base_cam[:3, 3],
        rays_cam @ T_base_cam[:3, :3].T,
    )


SMALL_OBJECT_PUSH = 0.1  # of the prior width, away from the sensor (measured, see above)


def object_from_camera(
    box: np.ndarray,
    cls: str,
    camera: CameraModel,
    T_base_cam: np.ndarray,
    ground: GroundModel | None = None,
) -> Object3D | None:
    """Camera-only estimate: the box's bottom centre cast onto the ground plane
    (``pixel_rays``)."""
    origin, rays = pixel_rays(camera, T_base_cam, np.array([[(box[0] + box[2]) / 2, box[3]]]))
    ray = rays[0]
    normal, d = (ground.normal, ground.d) if ground is not None else (np.array([0, 0, 1.0]), 0.0)
    denom = float(normal @ ray)
    if denom >= -1e-6:  # the ray does not go down to the ground
        return None
    t = -(normal @ origin + d) / denom
    if t <= 0 or t > 150:
        return None
    contact = origin + t * ray
    prior = np.array(CLASS_SIZE_PRIOR.get(cls, DEFAULT_PRIOR))
    bearing = np.arctan2(contact[1], contact[0])
    # The contact point is on the near face: the centre lies half a length further away.
    centre = contact + np.array([np.cos(bearing), np.sin(bearing), 0.0]) * prior[0] / 2
    centre[2] = contact[2] + prior[2] / 2
    return Object3D(centre, prior, float(bearing), "camera_only", 0, fit="ground_ray")
