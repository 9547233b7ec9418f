"""tf2_msgs/TFMessage (``/tf`` and ``/tf_static``) to validated transforms and back.

Frame ids lose a leading ``/`` (tf2 does the same); quaternions are checked for finite
values and normalised, and a zero quaternion is refused. A bad transform is dropped on
its own and counted (:class:`TransformList`); the good ones of the message are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LayoutError, MessageError, SizeLimitError, ValueRangeError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .stamps import checked_stamp_ns, make_header

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


REMOVED_REASON = "bad_transforms_removed"


@dataclass(frozen=True)
class RejectedTransform:
    """A transform refused on its own: the frames it named (as sent) and why, in words
    naming the field and value, so a lookup that needs it can say so."""

    parent: str
    child: str
    problem: str


class TransformList(list[StampedTransform]):
    """The valid transforms of one TFMessage, in message order.

    ``removed`` counts transforms refused one by one (``problems`` holds their errors,
    each naming ``transforms[i].<field>`` and the value); ``removed_reason`` is the note
    key to count them under and ``removed_detail`` the first problem in words.
    """

    def __init__(
        self, transforms: Iterable[StampedTransform] = (), problems: Iterable[MessageError] = ()
    ) -> None:
        super().__init__(transforms)
        self.problems: list[MessageError] = list(problems)
        self.rejected: list[RejectedTransform] = []

    @property
    def removed(self) -> int:
        return len(self.problems)

    @property
    def removed_reason(self) -> str:
        return REMOVED_REASON if self.problems else ""

    @property
    def removed_detail(self) -> str:
        return str(self.problems[0]) if self.problems else ""


def _transform(t: Any, where: str, limits: MessageLimits) -> StampedTransform:
    parent = _frame(t.header.frame_id, f"{where}.header.frame_id")
    child = _frame(t.child_frame_id, f"{where}.child_frame_id")
    if parent == child:
        raise LayoutError(TF_MESSAGE, f"{where}.child_frame_id", child, "equals its parent")
    tr, rot = t.transform.translation, t.transform.rotation
    translation = np.array([tr.x, tr.y, tr.z], dtype=np.float64)
    quat = np.array([rot.x, rot.y, rot.z, rot.w], dtype=np.float64)
    for name, values in (("translation", translation), ("rotation", quat)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            axis = "xyzw"[int(bad[0])]
            field = f"{where}.transform.{name}.{axis}"
            raise ValueRangeError(TF_MESSAGE, field, float(values[bad[0]]), "not finite")
    with np.errstate(over="ignore"):
        norm = float(np.linalg.norm(quat))
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueRangeError(
            TF_MESSAGE, f"{where}.transform.rotation", quat.tolist(), "not a rotation (zero)"
        )
    # tf_static publishers often leave static transforms at stamp 0 (tf2 ignores their
    # time), so 0 is accepted here; a negative stamp is not.
    stamp = checked_stamp_ns(
        t.header.stamp, TF_MESSAGE, f"{where}.header.stamp", allow_zero=True, limits=limits
    )
    return StampedTransform(parent, child, stamp, translation, quat / norm)


def tf_message_to_transforms(
    msg: Any, limits: MessageLimits = DEFAULT_LIMITS, *, raise_if_all_bad: bool = True
) -> TransformList:
    """The valid transforms of a TFMessage; a bad transform is dropped and counted.

    A transform with an empty or self-referencing frame id, a NaN/Inf translation or
    rotation, a zero quaternion or a stamp before 1970 is left out, its error kept in
    ``TransformList.problems`` and its frames in ``TransformList.rejected``. A message
    whose transforms are all bad raises the first error (an empty message is an empty
    list) unless ``raise_if_all_bad`` is False, when it is an empty list with its
    problems; over ``limits.max_transforms`` raises :class:`SizeLimitError`.
    """
    transforms = msg.transforms
    if len(transforms) > limits.max_transforms:
        raise SizeLimitError(
            TF_MESSAGE, "transforms", len(transforms), f"over the cap of {limits.max_transforms}"
        )
    out, problems, rejected = [], [], []
    for i, t in enumerate(transforms):
        try:
            out.append(_transform(t, f"transforms[{i}]", limits))
        except MessageError as exc:
            problems.append(exc)
            frames = (str(getattr(t.header, "frame_id", "")), str(getattr(t, "child_frame_id", "")))
            rejected.append(RejectedTransform(*(f.lstrip("/") for f in frames), str(exc)))
    if problems and not out and raise_if_all_bad:
        raise problems[0]
    result = TransformList(out, problems)
    result.rejected = rejected
    return result


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
