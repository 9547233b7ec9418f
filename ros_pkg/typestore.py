"""The rosbags typestore used for bags: ROS 2 Jazzy types plus vision_msgs and radar_msgs.

vision_msgs (4.x, the Humble/Jazzy layout) and radar_msgs are not in rosbags' bundled
stores; their .msg definitions ship in ``ros_pkg/msg`` and are registered here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

MSG_DIR = Path(__file__).resolve().parent / "msg"


def shipped_msg_definitions() -> dict[str, str]:
    """Map ``pkg/msg/Name`` to the .msg text for every definition shipped in the package."""
    out: dict[str, str] = {}
    for path in sorted(MSG_DIR.glob("*/*.msg")):
        out[f"{path.parent.name}/msg/{path.stem}"] = path.read_text()
    return out


@lru_cache(maxsize=1)
def get_project_typestore() -> Any:
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for name, text in shipped_msg_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
