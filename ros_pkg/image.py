"""sensor_msgs/Image and sensor_msgs/CompressedImage to and from numpy.

``image_to_array`` returns the pixels in the message's own encoding as a view on the
message buffer where the layout allows (row padding via strides, no copy), and a
native-endian copy where ``is_bigendian`` demands a byte swap. ``image_to_bgr8``
turns any colour-capable encoding (RGB/BGR/RGBA/BGRA, mono, Bayer, YUV 4:2:2) into the
BGR uint8 image the models take, with OpenCV doing demosaicing and colour conversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .errors import EncodingError, LayoutError, SizeLimitError
from .factory import MessageFactory
from .limits import DEFAULT_LIMITS, MessageLimits
from .stamps import make_header

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"


@dataclass(frozen=True)
class EncodingInfo:
    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


def _enc(dtype: str, channels: int) -> EncodingInfo:
    return EncodingInfo(np.dtype(dtype), channels)


ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": _enc("u1", 3),
    "bgr8": _enc("u1", 3),
    "rgba8": _enc("u1", 4),
    "bgra8": _enc("u1", 4),
    "rgb16": _enc("u2", 3),
    "bgr16": _enc("u2", 3),
    "rgba16": _enc("u2", 4),
    "bgra16": _enc("u2", 4),
    "mono8": _enc("u1", 1),
    "mono16": _enc("u2", 1),
    "bayer_rggb8": _enc("u1", 1),
    "bayer_bggr8": _enc("u1", 1),
    "bayer_gbrg8": _enc("u1", 1),
    "bayer_grbg8": _enc("u1", 1),
    "bayer_rggb16": _enc("u2", 1),
    "bayer_bggr16": _enc("u2", 1),
    "bayer_gbrg16": _enc("u2", 1),
    "bayer_grbg16": _enc("u2", 1),
    # Packed 4:2:2, two bytes per pixel. "yuv422" is UYVY in ROS (deprecated alias of "uyvy").
    "yuv422": _enc("u1", 2),
    "uyvy": _enc("u1", 2),
    "yuv422_yuy2": _enc("u1", 2),
    "yuyv": _enc("u1", 2),
}

_GENERIC = re.compile(r"^(8|16|32|64)(U|S|F)C([1-9][0-9]*)$")
_GENERIC_KIND = {"U": "u", "S": "i", "F": "f"}

# ROS names a Bayer pattern by its first row; OpenCV by the second row's first two
# pixels, hence the apparent swap (the same table cv_bridge uses).
_BAYER_TO_BGR = {
    "rggb": cv2.COLOR_BayerBG2BGR,
    "bggr": cv2.COLOR_BayerRG2BGR,
    "gbrg": cv2.COLOR_BayerGR2BGR,
    "grbg": cv2.COLOR_BayerGB2BGR,
}
_YUV_TO_BGR = {
    "yuv422": cv2.COLOR_YUV2BGR_UYVY,
    "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUYV,
    "yuyv": cv2.COLOR_YUV2BGR_YUYV,
}


def encoding_info(encoding: str, msgtype: str = IMAGE) -> EncodingInfo:
    info = ENCODINGS.get(encoding)
    if info is not None:
        return info
    match = _GENERIC.match(encoding)
    if match:
        bits, kind, channels = match.groups()
        if kind == "F" and bits == "8":
            raise EncodingError(msgtype, "encoding", encoding, "no 8-bit float type")
        dtype = np.dtype(f"{_GENERIC_KIND[kind]}{int(bits) // 8}")
        return EncodingInfo(dtype, int(channels))
    raise EncodingError(
        msgtype,
        "encoding",
        encoding,
        f"unknown encoding; supported: {', '.join(ENCODINGS)}, and <bits><U|S|F>C<n>",
    )


def _buffer(data: Any) -> np.ndarray:
    """A uint8 view of a message's data field (numpy array, array.array, bytes, list)."""
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def image_to_array(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as (H, W) or (H, W, C) in the message's encoding.

    A view on the message buffer when the data is native-endian (row padding is
    skipped through strides); a native-endian copy otherwise.
    """
    encoding = str(msg.encoding)
    info = encoding_info(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    for name, value in (("height", height), ("width", width)):
        if value < 0:
            raise LayoutError(IMAGE, name, value, "must not be negative")
        if value > limits.max_image_side:
            raise SizeLimitError(
                IMAGE, name, value, f"over the cap of {limits.max_image_side} pixels"
            )
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise LayoutError(
            IMAGE,
            "step",
            step,
            f"smaller than width*bytes_per_pixel = {width}*{info.bytes_per_pixel} = {row_bytes}",
        )
    if step * height > limits.max_image_bytes:
        raise SizeLimitError(
            IMAGE,
            "step",
            step,
            f"step*height = {step * height} over the cap of {limits.max_image_bytes} bytes",
        )
    if info.channels == 2 and encoding in _YUV_TO_BGR and width % 2:
        raise LayoutError(IMAGE, "width", width, f"{encoding} packs pixel pairs: must be even")
    buf = _buffer(msg.data)
    if buf.size != step * height:
        raise LayoutError(
            IMAGE,
            "data",
            f"<{buf.size} bytes>",
            f"length is not step*height = {step}*{height} = {step * height}",
        )
    big_endian = bool(msg.is_bigendian) and info.dtype.itemsize > 1
    dtype = info.dtype.newbyteorder(">" if big_endian else "<")
    itemsize = info.dtype.itemsize
    shape: tuple[int, ...] = (
        (height, width, info.channels) if info.channels > 1 else (height, width)
    )
    strides: tuple[int, ...] = (
        (step, info.bytes_per_pixel, itemsize) if info.channels > 1 else (step, itemsize)
    )
    if height == 0 or width == 0:
        return np.zeros(shape, dtype=info.dtype)
    view = np.ndarray(shape, dtype=dtype, buffer=buf, strides=strides)
    if big_endian:
        return view.astype(info.dtype.newbyteorder("="))
    return view


def image_to_bgr8(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Any colour-capable encoding as a contiguous BGR uint8 image (H, W, 3)."""
    encoding = str(msg.encoding)
    pixels = image_to_array(msg, limits)
    if encoding.startswith("bayer_"):
        pattern = encoding[len("bayer_") : len("bayer_") + 4]
        bgr = cv2.cvtColor(np.ascontiguousarray(pixels), _BAYER_TO_BGR[pattern])
        return _to_u8(bgr)
    if encoding in _YUV_TO_BGR:
        return cv2.cvtColor(np.ascontiguousarray(pixels), _YUV_TO_BGR[encoding])
    if encoding not in ENCODINGS and encoding not in ("8UC1", "8UC3", "8UC4"):
        # 16UC1 / 32FC1 are depth by convention; other generic types have no colour order.
        raise EncodingError(IMAGE, "encoding", encoding, "a depth or generic image is not colour")
    pixels = _to_u8(pixels)
    if pixels.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2BGR)
    if encoding.startswith("rgba"):
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGR)
    if encoding.startswith("rgb"):
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
    if pixels.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(pixels)


def _to_u8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    raise EncodingError(IMAGE, "encoding", str(pixels.dtype), "cannot reduce to 8 bits")


def array_to_image(
    pixels: np.ndarray,
    encoding: str,
    *,
    factory: MessageFactory,
    stamp_ns: int,
    frame_id: str,
    is_bigendian: bool = False,
    step: int | None = None,
) -> Any:
    """Build a sensor_msgs/Image from pixels already in ``encoding``'s layout.

    ``step`` larger than the packed row width pads each row with zeros, as drivers with
    aligned rows do.
    """
    info = encoding_info(encoding)
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] != info.channels:
        raise LayoutError(
            IMAGE, "data", f"<array {pixels.shape}>", f"{encoding} needs {info.channels} channels"
        )
    height, width = pixels.shape[:2]
    row_bytes = width * info.bytes_per_pixel
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise LayoutError(IMAGE, "step", step, f"smaller than the packed row of {row_bytes} bytes")
    dtype = info.dtype.newbyteorder(">" if is_bigendian else "<")
    packed = np.ascontiguousarray(pixels, dtype=dtype)
    rows = packed.view(np.uint8).reshape(height, row_bytes)
    if step != row_bytes:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = rows
        rows = padded
    return factory.make(
        IMAGE,
        header=make_header(factory, stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=1 if is_bigendian else 0,
        step=step,
        data=rows.reshape(-1),
    )


def _compressed_kind(fmt: str) -> str:
    text = fmt.lower()
    # image_transport writes e.g. "bgr8; jpeg compressed bgr8" or "rgb8; png compressed ..."
    if "compresseddepth" in text.replace(" ", ""):
        raise EncodingError(COMPRESSED, "format", fmt, "compressedDepth is not a colour image")
    for kind in ("jpeg", "jpg", "png"):
        if kind in text:
            return "png" if kind == "png" else "jpeg"
    raise EncodingError(COMPRESSED, "format", fmt, "unsupported format; expected jpeg or png")


def compressed_to_bgr8(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png) to BGR uint8."""
    _compressed_kind(str(msg.format))
    buf = _buffer(msg.data)
    if buf.size > limits.max_compressed_bytes:
        raise SizeLimitError(
            COMPRESSED,
            "data",
            f"<{buf.size} bytes>",
            f"over the cap of {limits.max_compressed_bytes} bytes",
        )
    if buf.size == 0:
        raise LayoutError(COMPRESSED, "data", "<0 bytes>", "empty")
    # Read the declared size from the header before decoding, so a tiny file that
    # claims a huge image is refused before OpenCV allocates it.
    header_ok, dims = _peek_dimensions(buf)
    if header_ok and (max(dims) > limits.max_image_side):
        raise SizeLimitError(
            COMPRESSED,
            "data",
            f"<{dims[0]}x{dims[1]} image>",
            f"side over the cap of {limits.max_image_side} pixels",
        )
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise LayoutError(COMPRESSED, "data", f"<{buf.size} bytes>", "could not be decoded")
    return image


def _peek_dimensions(buf: np.ndarray) -> tuple[bool, tuple[int, int]]:
    head = bytes(buf[:64])
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return True, (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    if head.startswith(b"\xff\xd8"):
        data = bytes(buf[: min(buf.size, 1 << 16)])
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return True, (w, h)
            i += 2 + length
    return False, (0, 0)


def bgr8_to_compressed(
    image: np.ndarray,
    fmt: str,
    *,
    factory: MessageFactory,
    stamp_ns: int,
    frame_id: str,
    jpeg_quality: int = 90,
) -> Any:
    kind = _compressed_kind(fmt)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png", image, params)
    if not ok:
        raise LayoutError(COMPRESSED, "data", f"<array {image.shape}>", f"{kind} encoding failed")
    return factory.make(
        COMPRESSED,
        header=make_header(factory, stamp_ns, frame_id),
        format=f"bgr8; {kind} compressed bgr8",
        data=encoded.reshape(-1),
    )
