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

from .errors import EncodingError, LayoutError, MessageError, SizeLimitError
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


# 8- and 16-bit colour orders, mono and the four Bayer patterns (named by their first row).
ENCODINGS: dict[str, EncodingInfo] = {
    f"{name}{bits}": _enc(f"u{bits // 8}", channels)
    for name, channels in (
        *(("rgb", 3), ("bgr", 3), ("rgba", 4), ("bgra", 4), ("mono", 1)),
        *((f"bayer_{pattern}", 1) for pattern in ("rggb", "bggr", "gbrg", "grbg")),
    )
    for bits in (8, 16)
}
# Packed 4:2:2, two bytes per pixel. "yuv422" is UYVY in ROS (deprecated alias of "uyvy").
ENCODINGS.update({name: _enc("u1", 2) for name in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")})

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


def _buffer(data: Any, msgtype: str = IMAGE) -> np.ndarray:
    """A uint8 view of a message's data field (numpy array, array.array, bytes, list)."""
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        return data.reshape(-1)
    try:
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except TypeError:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LayoutError(msgtype, "data", type(data).__name__, f"not bytes: {exc}") from None


def image_to_array(msg: Any, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as (H, W) or (H, W, C) in the message's encoding.

    A view on the message buffer when the data is native-endian (row padding is
    skipped through strides); a native-endian copy otherwise.
    """
    encoding = str(msg.encoding)
    info = encoding_info(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    for name, value in (("height", height), ("width", width)):
        if value <= 0:
            raise LayoutError(IMAGE, name, value, "must be positive (an empty image is no frame)")
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
        return _to_u8(_cvt(pixels, _BAYER_TO_BGR[pattern], encoding))
    if encoding in _YUV_TO_BGR:
        return _cvt(pixels, _YUV_TO_BGR[encoding], encoding)
    if encoding not in ENCODINGS and encoding not in ("8UC1", "8UC3", "8UC4"):
        # 16UC1 / 32FC1 are depth by convention; other generic types have no colour order.
        raise EncodingError(IMAGE, "encoding", encoding, "a depth or generic image is not colour")
    pixels = _to_u8(pixels)
    if pixels.ndim == 2:
        return _cvt(pixels, cv2.COLOR_GRAY2BGR, encoding)
    if encoding.startswith("rgba"):
        return _cvt(pixels, cv2.COLOR_RGBA2BGR, encoding)
    if encoding.startswith("rgb"):
        return _cvt(pixels, cv2.COLOR_RGB2BGR, encoding)
    if pixels.shape[2] == 4:
        return _cvt(pixels, cv2.COLOR_BGRA2BGR, encoding)
    return np.ascontiguousarray(pixels)


def _cvt(pixels: np.ndarray, code: int, encoding: str) -> np.ndarray:
    """``cv2.cvtColor`` with OpenCV's errors as a LayoutError naming the encoding."""
    try:
        return cv2.cvtColor(np.ascontiguousarray(pixels), code)
    except cv2.error as exc:
        raise LayoutError(
            IMAGE, "data", f"<{encoding} {pixels.shape}>", f"OpenCV: {_cv_message(exc)}"
        ) from None


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
    """Decode a sensor_msgs/CompressedImage (jpeg or png) to BGR uint8.

    The size is read from the stream's own header (JPEG: the first SOFn, found by walking
    the segments by their lengths however far it is; PNG: IHDR) and checked against the
    caps before OpenCV sees a byte, so a small file declaring a huge image is refused
    without allocating it. Streams that are neither JPEG nor PNG, or whose size cannot be
    read from the header, are refused. OpenCV errors become a :class:`LayoutError`.
    """
    _compressed_kind(str(msg.format))
    buf = _buffer(msg.data, COMPRESSED)
    if buf.size > limits.max_compressed_bytes:
        cap = limits.max_compressed_bytes
        raise _stream_error(SizeLimitError, f"<{buf.size} bytes>", f"over the cap of {cap} bytes")
    if buf.size == 0:
        raise _stream_error(LayoutError, "<0 bytes>", "empty")
    kind, width, height, decoded = compressed_header(buf, limits)
    what = f"<{kind} {width}x{height}, {buf.size} bytes>"
    if width == 0 or height == 0:
        raise _stream_error(LayoutError, what, "declares an empty (zero-sized) image")
    if max(width, height) > limits.max_image_side:
        detail = f"side over the cap of {limits.max_image_side} pixels"
        raise _stream_error(SizeLimitError, what, detail)
    if decoded > limits.max_image_bytes:
        detail = f"decoding needs ~{decoded} bytes, over the cap of {limits.max_image_bytes}"
        raise _stream_error(SizeLimitError, what, detail)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise _stream_error(LayoutError, what, f"OpenCV: {_cv_message(exc)}") from None
    if image is None:
        raise _stream_error(LayoutError, what, "could not be decoded")
    if image.ndim != 3 or image.shape[:2] not in ((height, width), (width, height)):
        raise _stream_error(LayoutError, what, f"decoded to {image.shape}, not the header's size")
    return image


def _stream_error(cls: type[MessageError], value: str, detail: str) -> MessageError:
    return cls(COMPRESSED, "data", value, detail)


def _cv_message(exc: Exception) -> str:
    """The useful line of an OpenCV error (its text starts with a source location)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> samples per pixel decoded
# JPEG frame headers SOF0..SOF15 less DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])  # TEM, SOI, RSTn: no length
_OTHER_FORMATS = ((b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


def _be(buf: np.ndarray, start: int, size: int) -> int:
    return int.from_bytes(bytes(buf[start : start + size]), "big")


def compressed_header(buf: np.ndarray, limits: MessageLimits) -> tuple[str, int, int, int]:
    """``(kind, width, height, decoded_bytes)`` read from a JPEG or PNG header.

    ``decoded_bytes`` estimates what OpenCV allocates: the BGR output plus, for PNG, the
    image at its native depth, and for JPEG the 16-bit DCT coefficients of every component
    (libjpeg keeps them all for progressive and multi-scan files).
    """
    if bytes(buf[:8]) == _PNG_SIGNATURE:
        if buf.size < 33 or bytes(buf[12:16]) != b"IHDR" or _be(buf, 8, 4) != 13:
            raise _stream_error(LayoutError, f"<{buf.size} bytes>", "PNG without IHDR")
        width, height = _be(buf, 16, 4), _be(buf, 20, 4)
        depth, colour = int(buf[24]), int(buf[25])
        channels = _PNG_CHANNELS.get(colour)
        if channels is None or depth not in (1, 2, 4, 8, 16):
            raise _stream_error(LayoutError, f"<PNG depth {depth} colour {colour}>", "bad IHDR")
        native = channels * (2 if depth == 16 else 1)
        return "png", width, height, width * height * (native + 3)
    if bytes(buf[:2]) == b"\xff\xd8":
        width, height, components = _jpeg_frame(buf, limits)
        return "jpeg", width, height, width * height * (3 + 2 * components)
    value = f"<{bytes(buf[:8]).hex()}...>"
    for magic, name in _OTHER_FORMATS:  # OpenCV would decode these, past every cap
        if bytes(buf[: len(magic)]) == magic:
            raise _stream_error(EncodingError, value, f"a {name} stream: only JPEG/PNG decoded")
    raise _stream_error(LayoutError, value, "neither a JPEG nor a PNG stream")


def _jpeg_frame(buf: np.ndarray, limits: MessageLimits) -> tuple[int, int, int]:
    """``(width, height, components)`` of the first SOFn, walking the segments."""
    n, i = int(buf.size), 2
    for _ in range(limits.max_jpeg_header_segments):
        if i + 1 >= n:
            raise _stream_error(LayoutError, f"<{n} bytes>", "JPEG ends before its SOFn header")
        if buf[i] != 0xFF:
            raise _stream_error(LayoutError, f"<byte {int(buf[i])} at {i}>", "not a JPEG marker")
        marker = int(buf[i + 1])
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
        elif marker in _JPEG_STANDALONE:
            i += 2
        elif marker in (0x00, 0xD9, 0xDA):  # stuffed byte, end of image, start of scan
            detail = "no JPEG frame header (SOFn) before it: the size is unknown"
            raise _stream_error(LayoutError, f"<marker {marker:#04x} at {i}>", detail)
        elif marker in _JPEG_SOF:
            if i + 10 > n:
                raise _stream_error(LayoutError, f"<{n} bytes>", "JPEG frame header cut off")
            return _be(buf, i + 7, 2), _be(buf, i + 5, 2), int(buf[i + 9])
        else:
            length = _be(buf, i + 2, 2) if i + 4 <= n else 0
            if length < 2:
                raise _stream_error(LayoutError, f"<length {length} at {i}>", "JPEG segment cut")
            i += 2 + length
    detail = f"no JPEG frame header within {limits.max_jpeg_header_segments} segments"
    raise _stream_error(SizeLimitError, f"<{n} bytes>", detail)


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
