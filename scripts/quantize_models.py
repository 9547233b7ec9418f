#!/usr/bin/env python3
"""Make the INT8 models the derived manifests in ``models/`` describe (the recipe).

    .venv/bin/python scripts/quantize_models.py                  # every derived manifest
    .venv/bin/python scripts/quantize_models.py yolox_nano_416_int8 --calibration-frames 20

Reads the FP32 source from the model directory (``--model-dir``, else ``$MMP_MODEL_DIR``,
else ``../shared/models``), calibrates on the unlabelled KITTI raw frames (``--frames``;
every other frame by default, the rest held out), and writes the INT8 file and its
``.provenance.json`` into ``--out`` (default ``.cache/models``: ignored, never committed;
``models.directory`` is searched first, then there). Naming a model that has no derived
manifest reports whether its file is already quantised. User errors: one line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from multimodal_perception import paths
from multimodal_perception.perception.manifest import ManifestError, available_manifests
from multimodal_perception.perception.models import derived_dir, resolve_model_path
from multimodal_perception.perception.quantize import (
    QuantizeError,
    calibration_frames,
    quantize_model,
    quantized_ops,
)
from multimodal_perception.perception.runtime import ModelLoadError, sha256_of

DEFAULT_FRAMES = "kitti_raw_2011_09_26/image_02"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quantize_models.py", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="derived manifests (default: all of them)")
    p.add_argument("--model-dir", help="FP32 source models (default: $MMP_MODEL_DIR)")
    p.add_argument("--out", help=f"where INT8 files go (default: {derived_dir()})")
    p.add_argument("--frames", help=f"calibration images (default: <data>/{DEFAULT_FRAMES})")
    p.add_argument("--calibration-frames", type=int, default=20,
                   help="how many, spread evenly (0 = all; default 20 = every other)")  # fmt: skip
    return p


def _report_source(name: str, manifests: dict, directory: Path) -> None:
    """A model without a derived manifest: say whether it is already quantised."""
    manifest = manifests[name]
    path = resolve_model_path(manifest, directory)
    ops = quantized_ops(path)
    if ops:
        detail = ", ".join(f"{v} {k}" for k, v in ops.items())
        raise QuantizeError(f"{name} is already quantised ({detail}); nothing to do")
    raise QuantizeError(f"{name} is float but no models/*.yaml derives an INT8 model from it")


def run(args: argparse.Namespace) -> int:
    manifests = available_manifests()
    derived = {n: m for n, m in manifests.items() if m.derived_from is not None}
    source_dir = Path(args.model_dir or os.environ.get("MMP_MODEL_DIR") or paths.model_dir())
    out = Path(args.out) if args.out else derived_dir()
    frames_dir = Path(args.frames) if args.frames else paths.data_dir() / DEFAULT_FRAMES
    for name in args.names or sorted(derived):
        if name not in manifests:
            raise QuantizeError(f"no manifest {name!r}; derived ones: {', '.join(derived)}")
        if name not in derived:
            _report_source(name, manifests, source_dir)
        if not frames_dir.is_dir():
            raise QuantizeError(f"calibration frames {frames_dir} do not exist (--frames DIR)")
        manifest = derived[name]
        source = manifests[manifest.derived_from.model]
        frames = calibration_frames(frames_dir, args.calibration_frames)
        start = time.perf_counter()
        target = quantize_model(
            manifest, source, resolve_model_path(source, source_dir), out, frames
        )
        print(
            f"{name}: {target} ({target.stat().st_size / 1e6:.1f} MB, sha256 "
            f"{sha256_of(target)}), calibrated on {len(frames)} frames of {frames_dir} in "
            f"{time.perf_counter() - start:.1f} s; select it with models.detector={name} "
            f"(looked for in models.directory, then {derived_dir()})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (QuantizeError, ModelLoadError, ManifestError, OSError) as exc:
        print(f"quantize_models.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
