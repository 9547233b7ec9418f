"""tf2_ros.Buffer behind the pipeline's TransformSource interface (node only).

Converts ``geometry_msgs/TransformStamped`` to a 4x4 matrix and tf2's exceptions to the
pipeline's :class:`~multimodal_perception.fusion.transforms.TransformError` types, so
the pipeline degrades the same way under rclpy as in replay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fusion.transforms import (
    DisconnectedError,
    ExtrapolationError,
    TransformError,
    UnknownFrameError,
)


class Tf2Transforms:
    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        import tf2_ros
        from rclpy.time import Time

        when = Time() if stamp_ns is None else Time(nanoseconds=int(stamp_ns))
        try:
            t = self.buffer.lookup_transform(target, source, when)
        except tf2_ros.ExtrapolationException as exc:
            raise ExtrapolationError(str(exc)) from None
        except tf2_ros.ConnectivityException as exc:
            raise DisconnectedError(str(exc)) from None
        except (tf2_ros.LookupException, tf2_ros.InvalidArgumentException) as exc:
            raise UnknownFrameError(str(exc)) from None
        except tf2_ros.TransformException as exc:  # any other tf2 failure
            raise TransformError(str(exc)) from None
        from scipy.spatial.transform import Rotation

        q = t.transform.rotation
        tr = t.transform.translation
        out = np.eye(4)
        out[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
        out[:3, 3] = [tr.x, tr.y, tr.z]
        return out

    def clear(self) -> None:
        self.buffer.clear()
