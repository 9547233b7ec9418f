"""Run every benchmark in bench/ and print its lines (ratios against same-run baselines);
the rows they record go to bench/results.json (metric, value, unit, baseline, ratio,
goal, met)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402

for path in sorted(HERE.glob("bench_*.py")):
    print(f"\n== {path.stem}")
    importlib.import_module(path.stem).main()
print(f"\nresults: {write_results()}")
