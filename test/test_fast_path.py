"""The fast fusion path gives the outputs of the slow one it replaced.

"Before" is kept in ``fast_path_reference``: the code the fast path replaced (ground fit
with SVD on the whole cloud in float64, numpy projection of every non-ground point,
open3d's DBSCAN per box, per-box selections and the lidar evidence in numpy). The frames
of a bag are captured once (with the models' outputs), then run through two
``FrameCore``s: the fast path and the reference patched in. Decisions, kept boxes,
duplicates, track ids and the 3D objects' sources and point counts must be identical;
centres, sizes and yaws agree within ``TOL`` (1e-6 m / rad; measured: under 1e-11).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fast_path_reference import (
    reference_dbscan,
    reference_fit_ground,
    reference_lidar_evidence,
    reference_prepare_lidar,
    reference_project_points,
    use_reference,
)

from conftest import CACHE, DATA, MODELS, REPO, in_ci
from multimodal_perception.config import load_parameters
from multimodal_perception.core import FrameCore
from multimodal_perception.fusion import fusion3d
from multimodal_perception.fusion.fusion3d import dbscan
from multimodal_perception.fusion.projection import project_points
from multimodal_perception.replay import replay

TOL = 1e-6


# -- capture a bag's frames once, then run both cores --------------------------------------
@dataclass
class Captured:
    params: Any
    models: Any
    frames: list  # (SyncedFrame, raw detections, segmentation)


class _Recorded:
    """A model that answers with what the real one said, frame by frame."""

    def __init__(self, real: Any, outputs: list, method: str) -> None:
        self._real, self._outputs, self._method, self._i = real, outputs, method, 0

    def __getattr__(self, name: str) -> Any:
        return self._next if name == self._method else getattr(self._real, name)

    def __call__(self, image: np.ndarray, *_: Any) -> Any:  # the band / the boxes: recorded
        return self._next(image)

    def _next(self, image: np.ndarray, *_: Any) -> Any:
        out = self._outputs[self._i % len(self._outputs)]
        self._i += 1
        return out


def _capture(bag: Path, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Captured:
    frames: list = []
    stacks: list = []
    original = FrameCore.step

    def step(self: FrameCore, frame: Any) -> Any:
        det = self.models.detector(frame.image)
        seg = self.models.segmenter.segment(frame.image) if self.models.segmenter else None
        frames.append((frame, det, seg))
        stacks.append(self.models)
        return original(self, frame)

    with monkeypatch.context() as m:
        m.setattr(FrameCore, "step", step)
        replay([bag], Path(tempfile.mkdtemp()), pictures=0, progress=False, overrides=overrides)
    params = load_parameters(None).with_overrides(overrides)
    return Captured(params, stacks[0], frames)


def _run(cap: Captured) -> list:
    stack = cap.models
    recorded = type(stack)(
        _Recorded(stack.detector, [f[1] for f in cap.frames], "__call__"),
        _Recorded(stack.segmenter, [f[2] for f in cap.frames], "segment")
        if stack.segmenter
        else None,
        None,
        stack.embedded_default,
    )
    core = FrameCore(cap.params, recorded)
    return [core.step(frame) for frame, _, _ in cap.frames]


def _assert_same(fast: list, ref: list) -> int:
    compared = 0
    for a, b in zip(fast, ref, strict=True):
        assert [(d.keep, d.reason) for d in a.decisions] == [
            (d.keep, d.reason) for d in b.decisions
        ]
        assert a.kept == b.kept and a.duplicates == b.duplicates
        assert sorted(a.objects) == sorted(b.objects)
        for i, o in a.objects.items():
            p = b.objects[i]
            assert (o.source, o.points) == (p.source, p.points)
            np.testing.assert_allclose(o.center, p.center, atol=TOL, rtol=0)
            np.testing.assert_allclose(o.size, p.size, atol=TOL, rtol=0)
            assert abs(o.yaw - p.yaw) < TOL
            compared += 1
        assert {i: t.track_id for i, t in a.tracks.items()} == {
            i: t.track_id for i, t in b.tracks.items()
        }
        assert sorted(a.radar) == sorted(b.radar)
        for i, ev in a.radar.items():
            assert np.array_equal(ev.returns, b.radar[i].returns)
        if b.lidar_uv is None:
            assert a.lidar_uv is None
        else:
            np.testing.assert_allclose(a.lidar_uv, b.lidar_uv, atol=1e-9, rtol=0)
            np.testing.assert_allclose(a.lidar_depth, b.lidar_depth, atol=1e-9, rtol=0)
    return compared


def _compiled() -> dict[str, int]:
    """How many signatures each compiled kernel has."""
    from numba.core.registry import CPUDispatcher

    from multimodal_perception.fusion import box_evidence, consistency, kernels
    from multimodal_perception.fusion import projection_kernels as pk

    return {
        f"{m.__name__}.{name}": len(f.signatures)
        for m in (kernels, pk, box_evidence, consistency)
        for name, f in vars(m).items()
        if isinstance(f, CPUDispatcher)
    }


def _check(bag: Path, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> int:
    from multimodal_perception.fusion.kernels import warm_up

    warm_up()
    compiled = _compiled()
    cap = _capture(bag, overrides, monkeypatch)
    assert cap.frames
    fast = _run(cap)
    # Every argument type a replay passes was compiled by warm_up: no frame waits for numba.
    assert _compiled() == compiled
    with monkeypatch.context() as m:
        use_reference(m)
        ref = _run(cap)
    return _assert_same(fast, ref)


def test_fast_path_matches_reference_on_the_shipped_bag(monkeypatch):
    compared = _check(REPO / "bags" / "urban_crossing_5s", {}, monkeypatch)
    assert compared > 0, "the bag must yield lidar objects to compare"


@pytest.mark.real_data
def test_fast_path_matches_reference_on_kitti_raw(monkeypatch):
    source = DATA / "kitti_raw_2011_09_26"
    if not (source.is_dir() and (MODELS / "yolox_nano_416").is_dir()):
        if in_ci():
            pytest.fail(f"under CI the KITTI raw data and models must be present ({source})")
        pytest.skip(f"KITTI raw data or real models absent ({source}; ../shared not beside)")
    from multimodal_perception.bagbuild import build_real_bag

    bag = CACHE / "test_fast_path" / "kitti_raw"
    if not bag.exists():
        build_real_bag("kitti_raw", DATA, bag)
    overrides = {"models.directory": str(MODELS), "detector.tiling": False}
    assert _check(bag, overrides, monkeypatch) > 0


def test_dbscan_matches_open3d_on_random_clouds():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 400))
        k = int(rng.integers(1, 6))
        centres = rng.uniform(-5, 5, (k, 3))
        pts = centres[rng.integers(0, k, n)] + rng.normal(0, rng.uniform(0.05, 1.0), (n, 3))
        if n == 0:
            pts = np.zeros((0, 3))
        eps, min_points = float(rng.uniform(0.2, 1.0)), int(rng.integers(1, 6))
        expected = reference_dbscan(pts, eps, min_points) if n else np.zeros(0, int)
        np.testing.assert_array_equal(dbscan(pts, eps, min_points), expected)


def test_fit_ground_matches_reference_on_float32_and_float64():
    rng = np.random.default_rng(3)
    n = 60_000
    pts = np.column_stack(
        [rng.uniform(-60, 60, n), rng.uniform(-30, 30, n), rng.normal(-1.7, 0.03, n)]
    )
    pts[: n // 3, 2] += rng.uniform(0, 3, n // 3)  # objects above the ground
    pts = pts.astype(np.float32)
    ref = reference_fit_ground(pts.astype(np.float64))
    assert ref is not None
    for cloud in (pts, pts.astype(np.float64)):
        got = fusion3d.fit_ground(cloud)
        assert got is not None
        np.testing.assert_allclose(got.normal, ref.normal, atol=1e-9, rtol=0)
        assert abs(got.d - ref.d) < 1e-9


def test_ground_percentile_is_numpys_bit_for_bit():
    from multimodal_perception.fusion.ground import percentile

    rng = np.random.default_rng(4)
    for i in range(2000):
        values = rng.normal(0, 1, int(rng.integers(1, 3000))).astype(np.float32)
        values = np.round(values, 1) if i % 2 else values  # ties
        for q in (0, 37.5, 60, 100):
            expected = np.percentile(values.astype(np.float64), q)
            assert percentile(values.astype(np.float64), q) == expected
            assert percentile(values, q) == expected  # float32: partitioned as it is


def test_fit_ground_skips_points_without_a_height():
    rng = np.random.default_rng(6)
    n = 20_000
    pts = np.column_stack(
        [rng.uniform(-30, 30, n), rng.uniform(-15, 15, n), rng.normal(-1.7, 0.02, n)]
    )
    clean = fusion3d.fit_ground(pts)
    pts = np.vstack([pts, [[1.0, 2.0, np.nan], [3.0, -1.0, np.inf]]])
    got = fusion3d.fit_ground(pts)
    assert clean is not None and got is not None
    np.testing.assert_allclose(got.normal, clean.normal, atol=1e-3)
    assert abs(got.d - clean.d) < 0.02


def test_fit_ground_on_a_sensor_sending_zeros_finds_no_plane():
    # Most heights equal: nothing below the 60th percentile to sample (the numpy version
    # raised here).
    assert fusion3d.fit_ground(np.zeros((100, 3), np.float32)) is None


def test_parallel_models_give_the_sequential_outputs(monkeypatch):
    from multimodal_perception.perception.stack import load_models, thread_plan

    assert thread_plan(4, 0, True) == (True, 2)
    assert thread_plan(1, 0, True) == (False, 1)
    assert thread_plan(8, 0, False) == (False, 8)
    assert thread_plan(4, 3, True) == (True, 3)
    cap = _capture(REPO / "bags" / "urban_crossing_5s", {}, monkeypatch)
    results = []
    for threads in (1, 2):
        params = cap.params.with_overrides({"performance.threads": threads})
        stack = load_models(params)
        assert stack.parallel == (threads == 2)
        core = FrameCore(params, stack)
        results.append([core.step(frame) for frame, _, _ in cap.frames[:20]])
    sequential, parallel = results
    for a, b in zip(parallel, sequential, strict=True):
        np.testing.assert_array_equal(a.detections.boxes, b.detections.boxes)
        np.testing.assert_array_equal(a.segmentation.labels, b.segmentation.labels)
    _assert_same(parallel, sequential)


@pytest.mark.parametrize(
    "model, D, skew, baseline",
    [
        ("plumb_bob", [0.0] * 5, 0.0, 0.0),
        ("plumb_bob", [-0.3, 0.1, 0.001, -0.002, 0.0], 0.0, 0.0),
        ("rational_polynomial", [-0.2, 0.05, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0], 0.0, 0.0),
        ("equidistant", [0.05, -0.01, 0.002, 0.0], 0.0, 0.0),
        ("plumb_bob", [0.0] * 5, 25.0, 0.0),
        ("plumb_bob", [0.0] * 5, 0.0, 44.857),  # rectified, KITTI P2's baseline term
    ],
)
def test_frustum_crop_keeps_every_projected_point(model, D, skew, baseline):
    from multimodal_perception.fusion.projection import frustum_candidates
    from multimodal_perception.ros_pkg.camera_info import CameraModel

    rng = np.random.default_rng(11)
    n = 50_000
    pts = np.column_stack(
        [rng.uniform(-60, 60, n), rng.uniform(-60, 60, n), rng.uniform(-3, 3, n)]
    ).astype(np.float32)
    K = np.array([[700.0, skew, 620], [0, 700, 190], [0, 0, 1]])
    P = np.hstack([K, [[baseline], [0.0], [0.0]]])
    cam = CameraModel(1242, 375, K, np.array(D), np.eye(3), P, model)
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]  # base_link -> optical
    T[:3, 3] = [0.1, 1.6, -0.3]
    kept = project_points(pts.astype(np.float64), T, cam).index
    candidates = frustum_candidates(pts, T, cam)
    assert len(kept) > 1000 and np.isin(kept, candidates).all()
    assert len(candidates) < 0.6 * n  # it does crop
    ref = reference_prepare_lidar(pts, np.eye(4), T, cam)
    got = fusion3d.prepare_lidar(pts, np.eye(4), T, cam)
    np.testing.assert_allclose(
        got.points_base[got.projection.index], ref.points_base[ref.projection.index], atol=1e-9
    )
    np.testing.assert_allclose(got.projection.uv, ref.projection.uv, atol=1e-9)


@pytest.mark.parametrize(
    "model, D",
    [
        ("plumb_bob", [0.0] * 5),
        ("plumb_bob", [-0.3, 0.1, 0.001, -0.002, 0.02]),
        ("rational_polynomial", [-0.3, 0.1, 0.001, -0.002, 0.02, 0.01, 0.002, 0.001]),
        ("equidistant", [0.05, -0.01, 0.002, -0.001]),
        ("none", []),
    ],
)
def test_compiled_projection_matches_numpy(model, D):
    from multimodal_perception.ros_pkg.camera_info import CameraModel

    rng = np.random.default_rng(5)
    pts = (rng.normal(size=(40_000, 3)) * [20, 10, 2]).astype(np.float32)
    K = np.array([[700.0, 0.5, 620], [0, 710, 190], [0, 0, 1]])
    R = np.array([[1.0, 0, 0], [0, 0.9998, -0.02], [0, 0.02, 0.9998]])
    P = np.hstack([K, [[-45.0], [0.3], [0.004]]])
    cam = CameraModel(1242, 375, K, np.array(D), R, P, model)
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    T[:3, 3] = [0.1, -0.2, 0.3]
    for rectified in (None, True, False):
        for margin in (0.0, 5.0):
            got = project_points(pts, T, cam, rectified=rectified, margin_px=margin)
            ref = reference_project_points(pts, T, cam, rectified=rectified, margin_px=margin)
            assert len(ref.index) > 1000
            np.testing.assert_array_equal(got.index, ref.index)
            np.testing.assert_allclose(got.uv, ref.uv, atol=1e-9, rtol=0)
            np.testing.assert_allclose(got.depth, ref.depth, atol=1e-12, rtol=0)


def test_compiled_lidar_evidence_matches_numpy():
    from multimodal_perception.fusion.box_evidence import lidar_evidence

    rng = np.random.default_rng(9)
    for _ in range(300):
        core = rng.uniform(2, 30, int(rng.integers(0, 60)))
        core[: core.size // 2] = rng.normal(core[0] if core.size else 10, 0.3, core.size // 2)
        ring = rng.uniform(2, 40, int(rng.integers(0, 20)))
        ring[rng.uniform(size=ring.size) < 0.1] = np.inf
        expected = float(rng.uniform(1, 40))
        got = lidar_evidence(core, ring, expected)
        assert got == reference_lidar_evidence(core, ring, expected)
    # Depths that are not finite do not count (the numpy version counted NaN as a window).
    core = np.array([10.0, 10.2, 10.4, np.nan, np.nan, np.inf])
    assert lidar_evidence(core, np.zeros(0), 8.0) == reference_lidar_evidence(
        core[:3], np.zeros(0), 8.0
    )
    assert lidar_evidence(np.full(4, np.nan), np.zeros(0), 8.0) == 0.0
