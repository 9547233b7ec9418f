"""Sensor timing models for sources without real stamps (real-data bags, synthetic world).

A sensor's k-th stamp is ``start + k / rate + offset + N(0, jitter)``, drawn from one
seeded generator in a fixed order so the same seed gives the same stamps. The model is
recorded in each bag's metadata as JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class SensorTiming:
    rate_hz: float
    offset_s: float = 0.0
    jitter_s: float = 0.0


@dataclass
class TimingModel:
    start_ns: int
    sensors: dict[str, SensorTiming]
    seed: int = 0
    note: str = ""
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def stamp(self, sensor: str, index: int) -> int:
        timing = self.sensors[sensor]
        jitter = self._rng.normal(0.0, timing.jitter_s) if timing.jitter_s > 0 else 0.0
        seconds = index / timing.rate_hz + timing.offset_s + jitter
        return self.start_ns + round(seconds * 1e9)

    def stamps(self, sensor: str, duration_s: float) -> list[int]:
        """All stamps of ``sensor`` whose nominal time lies in [0, duration)."""
        count = int(np.floor(duration_s * self.sensors[sensor].rate_hz - 1e-9)) + 1
        return [self.stamp(sensor, k) for k in range(max(count, 0))]

    def to_json(self) -> str:
        return json.dumps(
            {
                "start_ns": self.start_ns,
                "seed": self.seed,
                "note": self.note,
                "sensors": {k: asdict(v) for k, v in self.sensors.items()},
            },
            sort_keys=True,
        )
