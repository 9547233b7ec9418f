"""Sensor simulation by ray casting the world with open3d's RaycastingScene.

``snapshot(world, t)`` poses every actor at time ``t`` and builds the scene; the camera
casts one ray per pixel through the plumb_bob model (so the image is truly distorted),
then shades hits with per-class albedo, procedural textures, a sun and sensor noise; the
lidar casts a multi-beam pattern with range noise, dropout and intensity; the radar keeps
sparse returns on surfaces plus clutter, with RCS and the Doppler velocity of the true
relative motion. Each result carries its ground truth (semantic class, actor id).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import open3d as o3d

from .classes import ACTOR_RCS_DBSM, CLASS_ALBEDO_BGR, CLASS_REFLECTIVITY, IGNORE, TRAINID
from .trajectory import State
from .world import Mount, Rig, World

INVALID = np.uint32(0xFFFFFFFF)
_ALBEDO_LUT = np.zeros((256, 3))
for _cls, _colour in CLASS_ALBEDO_BGR.items():
    _ALBEDO_LUT[_cls] = _colour
_BODY_CLASS = np.zeros(256, dtype=bool)
_BODY_CLASS[[TRAINID[c] for c in ("car", "truck", "bus", "person", "rider")]] = True
SKY_BGR = np.array([0.93, 0.80, 0.66])


def planar_pose(state: State) -> np.ndarray:
    """4x4 pose in the world of a body on the ground at ``state``."""
    c, s = np.cos(state.yaw), np.sin(state.yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:2, 3] = state.x, state.y
    return T


def mount_pose(mount: Mount) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = mount.R, mount.xyz
    return T


@dataclass
class Snapshot:
    """The world frozen at one instant, ready for ray casting."""

    t: float
    scene: o3d.t.geometry.RaycastingScene
    semantic: list[np.ndarray]  # per geometry id: trainId per triangle
    actor_of_geometry: np.ndarray  # geometry id -> actor index (-1 = static)
    actor_states: list[State]
    actor_poses: list[np.ndarray]

    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        out = self.scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)))
        return {k: v.numpy() for k, v in out.items()}

    def classify(
        self, geometry: np.ndarray, primitive: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """trainId (IGNORE where nothing was hit) and actor index (-1) per hit."""
        sem = np.full(geometry.shape, IGNORE, np.uint8)
        actor = np.full(geometry.shape, -1, np.int32)
        hit = geometry != INVALID
        for gid, table in enumerate(self.semantic):
            mask = hit & (geometry == gid)
            sem[mask] = table[primitive[mask]]
            actor[mask] = self.actor_of_geometry[gid]
        return sem, actor


def snapshot(world: World, t: float, only_actor: int | None = None) -> Snapshot:
    """Pose the actors at ``t``; ``only_actor`` builds a scene with that actor alone."""
    scene = o3d.t.geometry.RaycastingScene()
    semantic, owners, states, poses = [], [], [], []
    if only_actor is None:
        scene.add_triangles(
            world.static.vertices.astype(np.float32), world.static.triangles.astype(np.uint32)
        )
        semantic.append(world.static.semantic)
        owners.append(-1)
    for i, actor in enumerate(world.actors):
        state = actor.trajectory.state(t)
        pose = planar_pose(state)
        states.append(state)
        poses.append(pose)
        if only_actor is not None and i != only_actor:
            continue
        verts = actor.mesh.vertices @ pose[:3, :3].T + pose[:3, 3]
        scene.add_triangles(verts.astype(np.float32), actor.mesh.triangles.astype(np.uint32))
        semantic.append(actor.mesh.semantic)
        owners.append(i)
    return Snapshot(t, scene, semantic, np.array(owners, np.int32), states, poses)


@lru_cache(maxsize=4)
def _camera_dirs(width: int, height: int, K_bytes: bytes, D: tuple[float, ...]) -> np.ndarray:
    """Unit ray directions (H, W, 3) in the optical frame through each pixel centre."""
    K = np.frombuffer(K_bytes).reshape(3, 3)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
    norm = cv2.undistortPoints(pix, K, np.array(D), None, None, None, crit).reshape(-1, 2)
    dirs = np.concatenate([norm, np.ones((len(norm), 1))], axis=1)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return dirs.reshape(height, width, 3)


def camera_dirs(rig: Rig) -> np.ndarray:
    return _camera_dirs(rig.width, rig.height, rig.K.tobytes(), tuple(rig.distortion))


def _rays(T_world_sensor: np.ndarray, dirs_sensor: np.ndarray) -> np.ndarray:
    d = dirs_sensor.reshape(-1, 3) @ T_world_sensor[:3, :3].T
    o = np.broadcast_to(T_world_sensor[:3, 3], d.shape)
    return np.concatenate([o, d], axis=1).astype(np.float32)


def _hash_noise(p: np.ndarray, scale: float) -> np.ndarray:
    """Deterministic blocky value noise in [0, 1) from world coordinates."""
    q = np.floor(p * scale)
    h = np.sin(q[..., 0] * 12.9898 + q[..., 1] * 78.233 + q[..., 2] * 37.719) * 43758.5453
    return h - np.floor(h)


@dataclass
class CameraFrame:
    bgr: np.ndarray  # (H, W, 3) uint8
    semantic: np.ndarray  # (H, W) uint8 Cityscapes trainId (sky = 10)
    instance: np.ndarray  # (H, W) int32 actor index, -1 for none
    depth: np.ndarray  # (H, W) float32 metres along the optical axis (inf = none)


def render_camera(
    world: World, snap: Snapshot, T_world_cam: np.ndarray, rng: np.random.Generator
) -> CameraFrame:
    rig = world.rig
    dirs = camera_dirs(rig)
    h, w = rig.height, rig.width
    hits = snap.cast(_rays(T_world_cam, dirs))
    t_hit = hits["t_hit"].reshape(h, w)
    sem, actor = snap.classify(hits["geometry_ids"], hits["primitive_ids"])
    sem, actor = sem.reshape(h, w), actor.reshape(h, w)
    hit = np.isfinite(t_hit)
    d_world = dirs.reshape(-1, 3) @ T_world_cam[:3, :3].T
    p = T_world_cam[:3, 3] + d_world.reshape(h, w, 3) * np.where(hit, t_hit, 0.0)[..., None]
    n = hits["primitive_normals"].reshape(h, w, 3)
    facing = np.sum(n * d_world.reshape(h, w, 3), axis=-1, keepdims=True)
    n = np.where(facing > 0, -n, n)

    albedo = _ALBEDO_LUT[sem]  # per-class colour by table lookup
    body = (actor >= 0) & _BODY_CLASS[sem]
    actor_colours = np.array([a.colour_bgr for a in world.actors] or [(0.0, 0.0, 0.0)])
    albedo[body] = actor_colours[actor[body]]
    _texture(world, albedo, sem, actor, p)

    if world.outdoor:
        sun = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])
        light = 0.45 + 0.6 * np.clip(n @ sun, 0.0, 1.0)
    else:
        light = 0.55 + 0.35 * np.clip(n[..., 2], 0.0, 1.0) + 0.15 * np.abs(n[..., 0])
    colour = albedo * light[..., None]
    if world.outdoor:
        haze = 1.0 - np.exp(-np.where(hit, t_hit, np.inf) / 350.0)
        elevation = np.clip(d_world.reshape(h, w, 3)[..., 2], 0, 1)[..., None]
        sky = SKY_BGR * (1.0 - 0.35 * elevation) + np.array([0.1, 0.0, -0.05]) * elevation
        colour = np.where(
            hit[..., None], colour * (1 - haze[..., None]) + sky * haze[..., None], sky
        )
        sem = np.where(hit, sem, TRAINID["sky"]).astype(np.uint8)
    noisy = colour * 255.0 + rng.normal(0.0, 2.5, colour.shape)
    bgr = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    z_axis = T_world_cam[:3, 2]
    depth = np.where(hit, t_hit * (d_world.reshape(h, w, 3) @ z_axis), np.inf).astype(np.float32)
    return CameraFrame(bgr, sem, actor, depth)


def _texture(
    world: World, albedo: np.ndarray, sem: np.ndarray, actor: np.ndarray, p: np.ndarray
) -> None:
    road = np.flatnonzero(sem.reshape(-1) == TRAINID["road"])
    flat_albedo = albedo.reshape(-1, 3)
    road_p = p.reshape(-1, 3)[road]
    flat_albedo[road] *= (0.9 + 0.2 * _hash_noise(road_p, 6.0))[:, None]
    painted = np.zeros(len(road), dtype=bool)
    for mark in world.lane_marks:  # on the road pixels only
        if mark.axis == "x":
            along, across = road_p[:, 0], road_p[:, 1]
        else:
            along, across = road_p[:, 1], road_p[:, 0]
        on = np.abs(across - mark.offset) < mark.width / 2
        on &= (along >= mark.start) & (along <= mark.stop)
        if mark.dashed:
            on &= np.mod(along, 9.0) < 3.0
        painted |= on
    flat_albedo[road[painted]] = (0.88, 0.88, 0.88)
    walk = sem == TRAINID["sidewalk"]
    grid = (np.abs(np.mod(p[walk][:, 0], 1.2) - 0.6) > 0.56) | (
        np.abs(np.mod(p[walk][:, 1], 1.2) - 0.6) > 0.56
    )
    albedo[walk] *= np.where(grid, 0.75, 1.0)[:, None]
    bld = sem == TRAINID["building"]
    facade = p[bld][:, 0] + p[bld][:, 1]
    window = (np.mod(facade, 3.0) > 0.8) & (np.mod(facade, 3.0) < 2.2)
    window &= (np.mod(p[bld][:, 2], 3.2) > 1.0) & (np.mod(p[bld][:, 2], 3.2) < 2.4)
    albedo[bld] = np.where(window[:, None], (0.30, 0.25, 0.22), albedo[bld])
    for cls, amount, scale in (
        (TRAINID["vegetation"], 0.6, 3.0),
        (TRAINID["terrain"], 0.35, 1.5),
        (TRAINID["wall"], 0.3, 2.0),
    ):
        m = sem == cls
        albedo[m] *= (1.0 - amount / 2 + amount * _hash_noise(p[m], scale))[:, None]
    # Vehicle glass: a dark band in the upper part of cars, trucks and buses.
    vehicle = np.flatnonzero(actor.reshape(-1) >= 0)
    heights = np.array(
        [a.size[2] if a.kind in ("car", "bus", "truck") else np.nan for a in world.actors]
        or [np.nan]
    )
    top = heights[actor.reshape(-1)[vehicle]]
    z = p.reshape(-1, 3)[vehicle, 2]
    glass = (z > top * 0.62) & (z < top * 0.93)  # NaN (not a vehicle) compares False
    flat_albedo[vehicle[glass]] = (0.25, 0.2, 0.18)


@dataclass
class LidarScan:
    xyz: np.ndarray  # (N, 3) float32 in the lidar frame
    intensity: np.ndarray  # (N,) float32 0..255
    ring: np.ndarray  # (N,) uint16 beam index (0 = lowest)
    actor: np.ndarray  # (N,) int32 actor index, -1 for scenery (ground truth)


def lidar_scan(
    world: World,
    snap: Snapshot,
    T_world_lidar: np.ndarray,
    rng: np.random.Generator,
    range_noise: float = 0.015,
    dropout: float = 0.02,
) -> LidarScan:
    rig = world.rig
    el = np.radians(np.linspace(*rig.lidar_elevation_deg, rig.lidar_beams))
    az = np.linspace(0, 2 * np.pi, rig.lidar_azimuth_steps, endpoint=False)
    A, E = np.meshgrid(az, el)  # beams x azimuths
    dirs = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1)
    ring = np.broadcast_to(np.arange(rig.lidar_beams)[:, None], A.shape).reshape(-1)
    dirs = dirs.reshape(-1, 3)
    hits = snap.cast(_rays(T_world_lidar, dirs))
    t = hits["t_hit"]
    keep = np.isfinite(t) & (t < rig.lidar_max_range)
    keep &= rng.uniform(size=t.shape) >= dropout
    sem, actor = snap.classify(hits["geometry_ids"], hits["primitive_ids"])
    rng_noisy = np.where(keep, t, 0.0) + rng.normal(0.0, range_noise, t.shape)
    xyz = dirs * rng_noisy[:, None]
    n_world = hits["primitive_normals"]
    d_world = dirs @ T_world_lidar[:3, :3].T
    cos_inc = np.abs(np.sum(n_world * d_world, axis=1))
    refl = np.array([CLASS_REFLECTIVITY.get(int(c), 0.3) for c in range(256)])[sem]
    intensity = np.clip(255.0 * refl * (0.3 + 0.7 * cos_inc) * np.exp(-t / 150.0), 0, 255)
    return LidarScan(
        xyz[keep].astype(np.float32),
        np.nan_to_num(intensity[keep]).astype(np.float32),
        ring[keep].astype(np.uint16),
        actor[keep],
    )


@dataclass
class RadarScan:
    xyz: np.ndarray  # (N, 3) float32 in the radar frame
    rcs: np.ndarray  # (N,) dBsm
    v_r: np.ndarray  # (N,) radial velocity relative to the sensor, m/s, + = receding
    v_r_compensated: np.ndarray  # (N,) radial velocity over ground, m/s
    actor: np.ndarray  # (N,) actor index, -1 scenery, -2 clutter (ground truth)
    v_r_true: np.ndarray  # (N,) noiseless relative radial velocity (ground truth)


def point_velocity(state: State, pose: np.ndarray, p_world: np.ndarray) -> np.ndarray:
    """Velocity over ground of material points of a rigid body: v + omega x r."""
    r = p_world - pose[:3, 3]
    v = np.array([state.vx, state.vy, 0.0])
    return v + np.stack(
        [-state.yaw_rate * r[:, 1], state.yaw_rate * r[:, 0], np.zeros(len(r))], axis=1
    )


def radar_scan(
    world: World,
    snap: Snapshot,
    ego: State,
    T_world_base: np.ndarray,
    T_world_radar: np.ndarray,
    rng: np.random.Generator,
    velocity_noise: float = 0.1,
    clutter: float = 3.0,
) -> RadarScan:
    rig = world.rig
    az = np.radians(np.arange(-60.0, 60.01, 0.75))
    el = np.radians(np.array([-6.0, -3.0, 0.0, 3.0, 6.0]))
    A, E = np.meshgrid(az, el)
    dirs = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)
    hits = snap.cast(_rays(T_world_radar, dirs))
    t = hits["t_hit"]
    sem, actor = snap.classify(hits["geometry_ids"], hits["primitive_ids"])
    valid = np.isfinite(t) & (t < rig.radar_max_range) & (sem != TRAINID["road"])
    valid &= sem != TRAINID["terrain"]
    rcs = np.full(t.shape, -10.0)
    for i, a in enumerate(world.actors):
        rcs[actor == i] = ACTOR_RCS_DBSM[a.kind]
    # Detection probability grows with RCS and falls with range; scenery is sparse.
    p_detect = np.where(actor >= 0, np.clip(0.45 + 0.02 * rcs - t / 400.0, 0.1, 0.9), 0.02)
    keep = valid & (rng.uniform(size=t.shape) < p_detect)
    d_world = dirs @ T_world_radar[:3, :3].T
    p_world = T_world_radar[:3, 3] + d_world * np.where(np.isfinite(t), t, 0.0)[:, None]
    idx = np.flatnonzero(keep)
    v_target = np.zeros((len(idx), 3))
    for i in np.unique(actor[idx]):
        if i < 0:
            continue
        m = actor[idx] == i
        v_target[m] = point_velocity(snap.actor_states[i], snap.actor_poses[i], p_world[idx][m])
    v_sensor = point_velocity(ego, T_world_base, T_world_radar[None, :3, 3])[0]
    u = d_world[idx]
    v_true = np.sum((v_target - v_sensor) * u, axis=1)
    v_comp_true = np.sum(v_target * u, axis=1)
    noise = rng.normal(0.0, velocity_noise, len(idx))
    rng_noisy = t[idx] + rng.normal(0.0, 0.1, len(idx))
    xyz = dirs[idx] * rng_noisy[:, None]
    rcs_out = rcs[idx] + rng.normal(0.0, 2.0, len(idx))
    # Clutter: false returns at random positions with noise-only velocity.
    n_clutter = int(rng.poisson(clutter))
    c_az = rng.uniform(-np.pi / 3, np.pi / 3, n_clutter)
    c_r = rng.uniform(2.0, rig.radar_max_range, n_clutter)
    c_xyz = np.stack([c_r * np.cos(c_az), c_r * np.sin(c_az), rng.normal(0, 0.3, n_clutter)], 1)
    c_v = rng.normal(0.0, 0.5, n_clutter)
    return RadarScan(
        np.vstack([xyz, c_xyz]).astype(np.float32),
        np.concatenate([rcs_out, rng.normal(-12.0, 3.0, n_clutter)]).astype(np.float32),
        np.concatenate([v_true + noise, c_v]).astype(np.float32),
        np.concatenate([v_comp_true + noise, c_v]).astype(np.float32),
        np.concatenate([actor[idx], np.full(n_clutter, -2)]).astype(np.int32),
        np.concatenate([v_true, c_v]).astype(np.float32),
    )
