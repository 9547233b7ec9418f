"""tf2_msgs/TFMessage (``/tf`` and ``/tf_static``) to validated transforms and back.

Frame ids lose a leading ``/`` (tf2 does the same); quaternions are checked for finite
values and normalised, and a zero quaternion is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LayoutError, SizeLimitError, ValueRangeError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .stamps import make_header, stamp_to_ns

TF_MESSAGE = "tf2_msgs/msg/TFMessage"


@dataclass(frozen=True)
class StampedTransform:
    """Pose of ``child`` in ``parent`` (maps child coordinates into parent)."""

    parent: str
    child: str
    stamp_ns: int
    translation: np.ndarray  # (3,) metres
    rotation_xyzw: np.ndarray  # (4,) unit quaternion

    def matrix(self) -> np.ndarray:
        from scipy.spatial.transform import Rotation

        out = np.eye(4)
        out[:3, :3] = Rotation.from_quat(self.rotation_xyzw).as_matrix()
        out[:3, 3] = self.translation
        return out


def _frame(value: Any, field: str) -> str:
    frame = str(value).lstrip("/")
    if not frame:
        raise ValueRangeError(TF_MESSAGE, field, value, "empty frame id")
    return frame


def tf_message_to_transforms(
    msg: Any, limits: MessageLimits = DEFAULT_LIMITS
) -> list[StampedTransform]:
    transforms = msg.transforms
    if len(transforms) > limits.max_transforms:
        raise SizeLimitError(
            TF_MESSAGE, "transforms", len(transforms), f"over the cap of {limits.max_transforms}"
        )
    out = []
    for i, t in enumerate(transforms):
        where = f"transforms[{i}]"
        parent = _frame(t.header.frame_id, f"{where}.header.frame_id")
        child = _frame(t.child_frame_id, f"{where}.child_frame_id")
        if parent == child:
            raise LayoutError(TF_MESSAGE, f"{where}.child_frame_id", child, "equals its parent")
        tr, rot = t.transform.translation, t.transform.rotation
        translation = np.array([tr.x, tr.y, tr.z], dtype=np.float64)
        quat = np.array([rot.x, rot.y, rot.z, rot.w], dtype=np.float64)
        if not np.all(np.isfinite(translation)):
            raise ValueRangeError(
                TF_MESSAGE, f"{where}.transform.translation", translation.tolist(), "not finite"
            )
        norm = float(np.linalg.norm(quat))
        if not np.isfinite(norm) or norm < 1e-6:
            raise ValueRangeError(
                TF_MESSAGE, f"{where}.transform.rotation", quat.tolist(), "not a rotation"
            )
        stamp = stamp_to_ns(t.header.stamp, TF_MESSAGE)
        out.append(StampedTransform(parent, child, stamp, translation, quat / norm))
    return out


def transforms_to_tf_message(
    transforms: Iterable[StampedTransform], *, factory: MessageFactory
) -> Any:
    items = []
    for t in transforms:
        translation = factory.make(
            "geometry_msgs/msg/Vector3",
            x=float(t.translation[0]),
            y=float(t.translation[1]),
            z=float(t.translation[2]),
        )
        x, y, z, w = (float(v) for v in t.rotation_xyzw)
        rotation = factory.make("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w)
        items.append(
            factory.make(
                "geometry_msgs/msg/TransformStamped",
                header=make_header(factory, t.stamp_ns, t.parent),
                child_frame_id=t.child,
                transform=factory.make(
                    "geometry_msgs/msg/Transform", translation=translation, rotation=rotation
                ),
            )
        )
    return factory.make(TF_MESSAGE, transforms=items)


def transform_from_matrix(
    parent: str, child: str, stamp_ns: int, matrix: np.ndarray
) -> StampedTransform:
    from scipy.spatial.transform import Rotation

    matrix = np.asarray(matrix, dtype=np.float64)
    quat = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    return StampedTransform(parent, child, int(stamp_ns), matrix[:3, 3].copy(), quat)
