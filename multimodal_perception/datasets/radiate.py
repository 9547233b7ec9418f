"""RADIATE ``tiny_foggy``: real per-sensor timestamps ("Frame: N Time: <unix s>" files)."""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"Frame:\s*(\d+)\s+Time:\s*(\d+)\.(\d+)")

SENSOR_FILES = {
    "camera": "zed_left.txt",
    "lidar": "velo_lidar.txt",
    "radar": "Navtech_Cartesian.txt",
}


def read_timestamps(path: str | Path) -> list[tuple[int, int]]:
    """(frame number, stamp in integer ns) per line, parsed without float rounding."""
    out = []
    for line in Path(path).read_text().splitlines():
        m = _LINE.search(line)
        if m:
            frac = (m.group(3) + "000000000")[:9]
            out.append((int(m.group(1)), int(m.group(2)) * 1_000_000_000 + int(frac)))
    return out


def sensor_stamps(sequence_dir: str | Path) -> dict[str, list[int]]:
    root = Path(sequence_dir)
    return {name: [t for _, t in read_timestamps(root / f)] for name, f in SENSOR_FILES.items()}
