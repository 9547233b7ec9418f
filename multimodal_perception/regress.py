"""``mmp regress``: the regression suite. A fixed set of bags replayed with the default
parameters, each summarised as numbers and compared with a committed baseline
(``test/regress_baseline.json``) within tolerances that cross-CPU float noise (JPEG, ray
casting, BLAS in the synthetic bags and the models) stays inside.

The synthetic part (the shipped bag and three scenarios at fixed seeds, built on the fly)
always runs; the real part (KITTI object, View-of-Delft, KITTI raw, with the real models)
runs where ``../shared`` is present. ``--update`` rewrites the baseline and says what
moved. Exit 0: every number within its tolerance; 1: a regression (one line each); 2: a
usage error.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .run_diff import available, paired_sets
from .run_metrics import METRICS, BagRun, load_bag_run

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "test" / "regress_baseline.json"
SCHEMA = "mmp.regress/1"


@dataclass(frozen=True)
class Case:
    name: str
    real: bool
    build: Callable[[Path], Path]  # scratch dir -> the bag to replay


def _synthetic(scenario: str, seed: int, seconds: float = 5.0) -> Callable[[Path], Path]:
    def build(scratch: Path) -> Path:
        from .sim.bag import SyntheticConfig, write_synthetic_bag

        out = scratch / f"{scenario}_{seed}"
        write_synthetic_bag(out, SyntheticConfig(scenario, seconds, seed))
        return out

    return build


def _real(dataset: str, data: Path) -> Callable[[Path], Path]:
    def build(scratch: Path) -> Path:
        from .bagbuild import build_real_bag

        build_real_bag(dataset, data, scratch / dataset)
        return scratch / dataset

    return build


def suite(shared: Path | None) -> list[Case]:
    cases = [
        Case("urban_crossing_5s", False, lambda _: REPO / "bags" / "urban_crossing_5s"),
        Case("highway_following_s1", False, _synthetic("highway_following", 1)),
        Case("indoor_aisle_s2", False, _synthetic("indoor_aisle", 2)),
        Case("indoor_inspection_s3", False, _synthetic("indoor_inspection", 3)),
    ]
    if shared is not None and (shared / "data").is_dir() and (shared / "models").is_dir():
        cases += [
            Case(d, True, _real(d, shared / "data")) for d in ("kitti_object", "vod", "kitti_raw")
        ]
    return cases


def summarise(run: BagRun) -> dict[str, float]:
    """The numbers kept for a bag: every metric, output and accounting count."""
    frames, _, _ = paired_sets(run, run)
    ones = np.ones((1, len(frames)))
    out: dict[str, float] = {"frames": float(run.report["frames"])}
    for name, metric in METRICS.items():
        if metric.needs == "timing" or not available(name, frames):
            continue  # wall clock differs between runs; tracking needs the synthetic world
        value = float(metric.compute(frames, ones)[0]) if len(frames) else math.nan
        if math.isfinite(value):
            out[name] = round(value, 4)
    out["boxes_kept"] = float(sum(len(f.classes) for f in run.outputs.values()))
    for decision, n in run.report.get("filter", {}).items():
        out[f"filter.{decision}"] = float(n)
    for topic, row in run.report.get("inputs", {}).items():
        out[f"{topic}.used"] = float(row["used"])
        for reason, n in row["dropped"].items():
            out[f"{topic}.dropped.{reason}"] = float(n)
    return out


def tolerance(key: str, baseline: float) -> float:
    """How far a number may move across CPUs: ratios 0.02, centre error 0.05 m, box and
    filter counts 5 % (+2), id switches 2; frames and message accounting exactly."""
    if key in ("recall", "precision", "ap50", "recall_before", "precision_before",
               "ap50_before", "mota"):  # fmt: skip
        return 0.02
    if key == "center_error_m":
        return 0.05
    if key == "id_switches":
        return 2.0
    if key == "boxes_kept" or key.startswith("filter."):
        return 0.05 * abs(baseline) + 2
    return 0.0


def compare(baseline: dict[str, dict[str, float]], current: dict[str, dict[str, float]]):
    """(regressions beyond tolerance, every change) as lines; a bag of the baseline that
    did not run here is neither (the real part without ../shared)."""
    beyond, moved = [], []
    for bag, numbers in sorted(current.items()):
        base = baseline.get(bag)
        if base is None:
            beyond.append(f"{bag}: not in the baseline (run make regress-update)")
            moved.append(f"{bag}: new, {len(numbers)} numbers")
            continue
        for key in sorted(set(base) | set(numbers)):
            old, new = base.get(key), numbers.get(key)
            if old == new:
                continue
            line = f"{bag}: {key} {old} -> {new}"
            moved.append(line)
            if old is None or new is None or abs(new - old) > tolerance(key, old) + 1e-9:
                limit = (
                    "" if old is None or new is None else f" (tolerance {tolerance(key, old):g})"
                )
                beyond.append(line + limit)
    return beyond, moved


def run_suite(
    out: Path, shared: Path | None, real: bool = True, log: Callable[[str], None] = print
) -> dict[str, dict[str, float]]:
    from .replay import replay

    summaries: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mmp-regress-") as scratch:
        for case in suite(shared if real else None):
            t0 = time.perf_counter()
            bag = case.build(Path(scratch))
            overrides = {"models.directory": str(shared / "models")} if case.real and shared else {}
            result = replay([bag], out / case.name, overrides=overrides, pictures=0, progress=False)
            summaries[case.name] = summarise(load_bag_run(case.name, result.out_dir))
            seconds = time.perf_counter() - t0
            log(f"  {case.name:24} {result.report['frames']:4d} frames  {seconds:6.1f} s")
    return summaries


def read_baseline(path: Path = BASELINE) -> dict[str, dict[str, float]]:
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    return doc["bags"]


def write_baseline(summaries: dict[str, dict[str, float]], path: Path = BASELINE) -> None:
    doc: dict[str, Any] = {"schema": SCHEMA, "bags": summaries}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def command(out: Path, shared: Path | None, update: bool, synthetic_only: bool) -> int:
    t0 = time.perf_counter()
    baseline = read_baseline()
    summaries = run_suite(out, shared, real=not synthetic_only)
    beyond, moved = compare(baseline, summaries)
    print(f"regression suite: {len(summaries)} bags in {time.perf_counter() - t0:.0f} s"
          + ("" if shared and not synthetic_only else " (synthetic part only)"))  # fmt: skip
    if update:
        merged = {**baseline, **summaries}
        write_baseline(merged)
        print(f"baseline {BASELINE} rewritten; {len(moved)} changes")
        print("\n".join(f"  {line}" for line in moved))
        return 0
    if beyond:
        print(f"{len(beyond)} beyond tolerance:")
        print("\n".join(f"  {line}" for line in beyond))
        return 1
    print(f"all within tolerance ({len(moved)} numbers moved inside it)")
    return 0
