"""Shared inputs of the multimodal tests: a scene, an image, the shipped bag."""

from __future__ import annotations

import numpy as np

from conftest import REPO

SHIPPED = REPO / "bags" / "urban_crossing_5s"
SCENE = {
    "objects": [
        {
            "confirmed": True,
            "class": "car",
            "track_id": 3,
            "range_m": 12.3,
            "bearing_deg": 5.0,
            "speed_mps": 6.0,
            "range_rate_mps": -4.5,
        },
        {
            "confirmed": True,
            "class": "person",
            "track_id": 7,
            "range_m": 8.0,
            "bearing_deg": 40.0,
            "speed_mps": 0.2,
            "range_rate_mps": 0.0,
        },
    ]
}
IMAGE = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
