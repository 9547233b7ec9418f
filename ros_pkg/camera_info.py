"""sensor_msgs/CameraInfo to and from a validated :class:`CameraModel`.

Supports the three distortion models ROS drivers publish: ``plumb_bob`` (k1 k2 p1 p2
k3), ``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) and ``equidistant`` (fisheye
k1..k4). Projection with the model lives in ``fusion/projection.py``: an image with
distortion is raw (K and D), one without is rectified (R and P, as image_geometry's
``project3dToPixel``), unless ``CameraModel.rectified`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import EncodingError, LayoutError, ValueRangeError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .stamps import make_header

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"

# Allowed coefficient counts per model (OpenCV accepts 4, 5, 8, 12 or 14 for the
# pinhole models; ROS drivers send 5 for plumb_bob and 8 for rational_polynomial).
DISTORTION_COEFFS = {
    "plumb_bob": (4, 5),
    "rational_polynomial": (8, 12, 14),
    "equidistant": (4,),
    "none": (0,),
}


@dataclass(frozen=True)
class CameraModel:
    width: int
    height: int
    K: np.ndarray  # (3, 3) intrinsics of the raw image
    D: np.ndarray  # (n,) distortion coefficients
    R: np.ndarray  # (3, 3) rectification rotation
    P: np.ndarray  # (3, 4) projection of the rectified image
    distortion_model: str
    frame_id: str = ""
    # Which image the pixels are in. None: image_geometry's convention -- an image with
    # no distortion is the rectified one (project with R and P, P's baseline term
    # included: a KITTI P2 or a stereo right camera); a distorted one is raw (K and D).
    # True / False force it (a rectified image whose CameraInfo still carries the raw
    # camera's D, or a raw undistorted image whose P is not K [I | 0]).
    rectified: bool | None = None

    @property
    def is_distorted(self) -> bool:
        return self.distortion_model != "none" and bool(np.any(self.D != 0.0))

    @property
    def is_rectified(self) -> bool:
        """Whether projection into this camera's image goes through R and P."""
        return (not self.is_distorted) if self.rectified is None else bool(self.rectified)


def _matrix(msg: Any, names: tuple[str, ...], shape: tuple[int, int]) -> np.ndarray:
    for name in names:
        if hasattr(msg, name):
            values = np.asarray(getattr(msg, name), dtype=np.float64).reshape(-1)
            if values.size != shape[0] * shape[1]:
                raise LayoutError(CAMERA_INFO, name, values.size, f"expected {shape} values")
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                raise ValueRangeError(CAMERA_INFO, f"{name}[{i}]", float(values[i]), "not finite")
            return values.reshape(shape)
    raise LayoutError(CAMERA_INFO, names[0], None, "field missing")


def camera_info_to_model(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> CameraModel:
    """Validate a CameraInfo (ROS 2 ``k d r p`` or ROS 1 ``K D R P`` names) into a model.

    Refused with a :class:`ValueRangeError` naming the field: NaN/Inf in K, D, R or P, a
    focal length (fx, fy of K or P) that is not positive, and a width or height of 0 or
    over ``limits.max_image_side``.
    """
    K = _matrix(msg, ("k", "K"), (3, 3))
    R = _matrix(msg, ("r", "R"), (3, 3))
    P = _matrix(msg, ("p", "P"), (3, 4))
    D = np.asarray(getattr(msg, "d", getattr(msg, "D", [])), dtype=np.float64).reshape(-1)
    model = str(msg.distortion_model) or "none"
    if model not in DISTORTION_COEFFS:
        raise EncodingError(
            CAMERA_INFO,
            "distortion_model",
            model,
            f"unsupported; expected one of {sorted(DISTORTION_COEFFS)}",
        )
    if model == "none" and D.size:
        model = "plumb_bob" if D.size in (4, 5) else model
    if D.size not in DISTORTION_COEFFS[model] and not (D.size == 0):
        raise LayoutError(
            CAMERA_INFO, "d", D.tolist(), f"{model} takes {DISTORTION_COEFFS[model]} coefficients"
        )
    bad = np.flatnonzero(~np.isfinite(D))
    if bad.size:
        raise ValueRangeError(CAMERA_INFO, f"d[{int(bad[0])}]", float(D[bad[0]]), "not finite")
    if D.size == 0:
        model = "none"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueRangeError(CAMERA_INFO, "k", K.reshape(-1).tolist(), "fx and fy must be > 0")
    if P[0, 0] <= 0 or P[1, 1] <= 0:
        raise ValueRangeError(CAMERA_INFO, "p", P.reshape(-1).tolist(), "fx' and fy' must be > 0")
    for name in ("width", "height"):
        value = int(getattr(msg, name))
        if value <= 0:
            raise ValueRangeError(CAMERA_INFO, name, value, "must be positive (0: uncalibrated)")
        if value > limits.max_image_side:
            raise ValueRangeError(
                CAMERA_INFO, name, value, f"over the image cap of {limits.max_image_side} pixels"
            )
    width, height = int(msg.width), int(msg.height)
    frame_id = str(msg.header.frame_id) if hasattr(msg, "header") else ""
    return CameraModel(width, height, K, D, R, P, model, frame_id)


def model_to_camera_info(
    model: CameraModel, *, factory: MessageFactory, stamp_ns: int, frame_id: str | None = None
) -> Any:
    roi = factory.make(
        "sensor_msgs/msg/RegionOfInterest",
        x_offset=0,
        y_offset=0,
        height=0,
        width=0,
        do_rectify=False,
    )
    return factory.make(
        CAMERA_INFO,
        header=make_header(factory, stamp_ns, model.frame_id if frame_id is None else frame_id),
        height=model.height,
        width=model.width,
        distortion_model="" if model.distortion_model == "none" else model.distortion_model,
        d=np.asarray(model.D, dtype=np.float64),
        k=np.asarray(model.K, dtype=np.float64).reshape(9),
        r=np.asarray(model.R, dtype=np.float64).reshape(9),
        p=np.asarray(model.P, dtype=np.float64).reshape(12),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )
