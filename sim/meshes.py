"""Triangle meshes of actors and static structures, each triangle carrying a trainId.

Actors are a few parts (body, cabin, wheels; torso, head, legs; frame, wheels, rider),
not bare boxes, so their silhouettes, lidar returns and shading look like objects. A
mesh is built in the actor's own frame: x forward, y left, z up, origin at the centre
of the bottom face; ``extent`` is its tight bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from .classes import TRAINID


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (T, 3) int64
    semantic: np.ndarray  # (T,) uint8 trainId per triangle

    @staticmethod
    def empty() -> Mesh:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.uint8))

    def __iadd__(self, other: Mesh) -> Mesh:
        offset = len(self.vertices)
        self.vertices = np.vstack([self.vertices, other.vertices])
        self.triangles = np.vstack([self.triangles, other.triangles + offset])
        self.semantic = np.concatenate([self.semantic, other.semantic])
        return self

    def transformed(self, R: np.ndarray, t: np.ndarray) -> Mesh:
        return Mesh(self.vertices @ R.T + t, self.triangles, self.semantic)

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def _from_o3d(mesh: o3d.geometry.TriangleMesh, trainid: int) -> Mesh:
    tris = np.asarray(mesh.triangles, dtype=np.int64)
    return Mesh(
        np.asarray(mesh.vertices, dtype=np.float64), tris, np.full(len(tris), trainid, np.uint8)
    )


def box(size: tuple[float, float, float], center: tuple[float, float, float], trainid: int) -> Mesh:
    sx, sy, sz = size
    m = o3d.geometry.TriangleMesh.create_box(sx, sy, sz)
    m.translate(np.array(center) - np.array([sx, sy, sz]) / 2)
    return _from_o3d(m, trainid)


def cylinder(
    radius: float,
    height: float,
    center: tuple[float, float, float],
    axis: str,
    trainid: int,
    resolution: int = 12,
) -> Mesh:
    m = o3d.geometry.TriangleMesh.create_cylinder(radius, height, resolution, 1)
    if axis == "y":
        m.rotate(o3d.geometry.get_rotation_matrix_from_xyz((np.pi / 2, 0, 0)), center=(0, 0, 0))
    elif axis == "x":
        m.rotate(o3d.geometry.get_rotation_matrix_from_xyz((0, np.pi / 2, 0)), center=(0, 0, 0))
    m.translate(center)
    return _from_o3d(m, trainid)


def sphere(radius: float, center: tuple[float, float, float], trainid: int) -> Mesh:
    m = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=8)
    m.translate(center)
    return _from_o3d(m, trainid)


def _wheels(length: float, width: float, radius: float, trainid: int, axles: int = 2) -> Mesh:
    out = Mesh.empty()
    xs = np.linspace(length * 0.32, -length * 0.32, axles)
    for x in xs:
        for y in (width / 2 - 0.12, -width / 2 + 0.12):
            out += cylinder(radius, 0.24, (x, y, radius), "y", trainid)
    return out


def car_mesh(length: float, width: float, height: float) -> Mesh:
    cid = TRAINID["car"]
    wheel_r = 0.33
    body_h = height * 0.5
    m = box((length, width, body_h), (0, 0, wheel_r * 0.6 + body_h / 2), cid)
    cabin_h = height - (wheel_r * 0.6 + body_h)
    m += box((length * 0.5, width * 0.9, cabin_h), (-length * 0.05, 0, height - cabin_h / 2), cid)
    m += _wheels(length, width, wheel_r, cid)
    return m


def truck_mesh(length: float, width: float, height: float, trainid: int | None = None) -> Mesh:
    tid = TRAINID["truck"] if trainid is None else trainid
    wheel_r = 0.5
    cab_l = 2.2
    m = box(
        (cab_l, width, height * 0.8), (length / 2 - cab_l / 2, 0, wheel_r * 0.5 + height * 0.4), tid
    )
    cargo_l = length - cab_l - 0.2
    m += box(
        (cargo_l, width, height - wheel_r * 0.8),
        (-length / 2 + cargo_l / 2, 0, wheel_r * 0.8 + (height - wheel_r * 0.8) / 2),
        tid,
    )
    m += _wheels(length, width, wheel_r, tid, axles=3)
    return m


def bus_mesh(length: float, width: float, height: float) -> Mesh:
    bid = TRAINID["bus"]
    wheel_r = 0.5
    m = box(
        (length, width, height - wheel_r * 0.6),
        (0, 0, wheel_r * 0.6 + (height - wheel_r * 0.6) / 2),
        bid,
    )
    m += _wheels(length, width, wheel_r, bid)
    return m


def person_mesh(length: float, width: float, height: float, trainid: int | None = None) -> Mesh:
    pid = TRAINID["person"] if trainid is None else trainid
    leg_h = height * 0.47
    head_r = height * 0.065
    torso_h = height - leg_h - 2 * head_r
    m = box((length * 0.45, width * 0.3, leg_h), (0, width * 0.17, leg_h / 2), pid)
    m += box((length * 0.45, width * 0.3, leg_h), (0, -width * 0.17, leg_h / 2), pid)
    m += box((length * 0.7, width * 0.75, torso_h), (0, 0, leg_h + torso_h / 2), pid)
    m += box(
        (length * 0.35, width * 0.12, torso_h * 0.9), (0, width * 0.44, leg_h + torso_h * 0.5), pid
    )
    m += box(
        (length * 0.35, width * 0.12, torso_h * 0.9), (0, -width * 0.44, leg_h + torso_h * 0.5), pid
    )
    m += sphere(head_r, (0, 0, height - head_r), pid)
    return m


def cyclist_mesh(length: float, width: float, height: float) -> Mesh:
    """A commuter bike (wheels, frame, fork, handlebar over the front axle, rear panniers)
    with a rider leaning forward onto the handlebar."""
    bike = TRAINID["bicycle"]
    wheel_r = 0.34
    front, rear = length / 2 - wheel_r, -length / 2 + wheel_r
    m = cylinder(wheel_r, 0.06, (front, 0, wheel_r), "y", bike, 16)
    m += cylinder(wheel_r, 0.06, (rear, 0, wheel_r), "y", bike, 16)
    m += box((front - rear, 0.06, 0.06), (0, 0, wheel_r + 0.25), bike)
    m += box((0.06, 0.06, 0.62), (front + 0.05, 0, wheel_r + 0.31), bike)  # fork and stem
    m += box((0.08, width, 0.05), (front + 0.05, 0, wheel_r + 0.62), bike)  # handlebar
    for side in (1, -1):  # panniers over the rear wheel
        m += box((0.4, 0.14, 0.35), (rear - 0.1, side * (width / 2 - 0.07), wheel_r + 0.2), bike)
    rider_h = height - wheel_r - 0.2
    rider = person_mesh(0.5, width * 0.9, rider_h, TRAINID["rider"])
    m += rider.transformed(np.eye(3), np.array([-0.05, 0.0, height - rider_h]))
    # Forearms from the shoulders down to the handlebar.
    for side in (1, -1):
        m += box(
            (front - 0.1, 0.08, 0.08),
            ((front - 0.1) / 2 + 0.05, side * width * 0.4, wheel_r + 0.68),
            TRAINID["rider"],
        )
    return m


def forklift_mesh(length: float, width: float, height: float) -> Mesh:
    tid = TRAINID["truck"]
    wheel_r = 0.28
    body_l = length * 0.7
    m = box((body_l, width, 1.1), (-length / 2 + body_l / 2, 0, wheel_r + 0.55), tid)
    m += box((0.9, width * 0.9, 0.08), (-length / 2 + body_l * 0.45, 0, height - 0.04), tid)
    for y in (width / 2 - 0.05, -width / 2 + 0.05):
        m += box(
            (0.06, 0.06, height - wheel_r - 1.1),
            (-length / 2 + body_l * 0.1, y, wheel_r + 1.1 + (height - wheel_r - 1.1) / 2),
            tid,
        )
        m += box((0.1, 0.1, height), (length / 2 - (length - body_l) - 0.05, y, height / 2), tid)
        m += box(
            (length - body_l, 0.12, 0.05), (length / 2 - (length - body_l) / 2, y * 0.6, 0.15), tid
        )
    m += _wheels(body_l, width, wheel_r, tid)
    return m


MESH_BUILDERS = {
    "car": car_mesh,
    "truck": truck_mesh,
    "bus": bus_mesh,
    "person": person_mesh,
    "cyclist": cyclist_mesh,
    "forklift": forklift_mesh,
}


def actor_mesh(kind: str, size_lwh: tuple[float, float, float]) -> Mesh:
    """The actor's mesh, rescaled so its bounding box is exactly ``size_lwh``."""
    mesh = MESH_BUILDERS[kind](*size_lwh)
    lo, hi = mesh.extent()
    scale = np.asarray(size_lwh) / (hi - lo)
    centre_xy = (lo[:2] + hi[:2]) / 2
    v = mesh.vertices.copy()
    v[:, :2] -= centre_xy
    v[:, 2] -= lo[2]
    mesh.vertices = v * scale
    return mesh
