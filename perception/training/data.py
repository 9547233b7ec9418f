"""Training and evaluation frames rendered from the synthetic world.

Each frame: the 640x384 camera image, its Cityscapes trainId labels and the visible 2D
boxes of every actor (rect of its visible pixels) with the detector class. Frames come
from all scenarios, several seeds and random times, rendered in worker processes and
cached as compressed .npz under ``.cache/`` (never committed). The shipped demo bag's
seed (0) is kept out of training.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...sim.classes import DETECTION_CLASSES
from ...sim.render import mount_pose, planar_pose, render_camera, snapshot
from ...sim.world import SCENARIOS, make_world

MIN_BOX_PIXELS = 40


@dataclass(frozen=True)
class FrameSpec:
    scenario: str
    seed: int
    t: float


def frame_specs(seeds: range, per_seed: int, sample_seed: int) -> list[FrameSpec]:
    rng = np.random.default_rng(sample_seed)
    return [
        FrameSpec(s, seed, float(t))
        for seed in seeds
        for s in sorted(SCENARIOS)
        for t in rng.uniform(0.0, 10.0, per_seed)
    ]


def render_frame(spec: FrameSpec) -> dict[str, np.ndarray]:
    world = make_world(spec.scenario, spec.seed)
    key = f"{spec.scenario}/{spec.seed}/{spec.t:.3f}".encode()
    rng = np.random.default_rng(zlib.crc32(key))  # stable across processes, unlike hash()
    ego = world.ego.state(spec.t)
    T_world_cam = planar_pose(ego) @ mount_pose(world.rig.camera)
    frame = render_camera(world, snapshot(world, spec.t), T_world_cam, rng)
    boxes, classes = [], []
    for i, actor in enumerate(world.actors):
        ys, xs = np.nonzero(frame.instance == i)
        if xs.size < MIN_BOX_PIXELS:
            continue
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        classes.append(DETECTION_CLASSES.index(actor.detection_class))
    return {
        "image": frame.bgr,
        "semantic": frame.semantic,
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "classes": np.array(classes, np.int64),
    }


def _render_to(args: tuple[FrameSpec, Path]) -> Path:
    spec, path = args
    if not path.exists():
        np.savez_compressed(path, **render_frame(spec))
    return path


def build_dataset(root: Path, specs: list[FrameSpec], workers: int = 2) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(s, root / f"{s.scenario}_{s.seed:03d}_{s.t:07.3f}.npz") for s in specs]
    (root / "specs.json").write_text(json.dumps([s.__dict__ for s in specs]))
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_render_to, jobs, chunksize=4))


def load_frames(paths: list[Path]) -> list[dict[str, np.ndarray]]:
    out = []
    for p in paths:
        with np.load(p) as z:
            out.append({k: z[k] for k in z.files})
    return out
