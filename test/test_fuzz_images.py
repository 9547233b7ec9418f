"""Image decoders, fuzzed (raw Image, CompressedImage, crafted JPEG/PNG headers): a
well-formed result or a MessageError, never anything else, and nothing decoded past the
caps (small caps here, so the property is checkable)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import cv2
import numpy as np
import pytest
from fuzz_common import (
    LIMITS,
    SIDE,
    TS,
    U32,
    F,
    compressed,
    decode,
    encoded,
    fuzz,
    header,
    noise,
    traced,
)
from hypothesis import given
from hypothesis import strategies as st

from conftest import roundtrip
from multimodal_perception.ros_pkg.errors import (
    EncodingError,
    LayoutError,
    MessageError,
    SizeLimitError,
)
from multimodal_perception.ros_pkg.image import (
    ENCODINGS,
    compressed_to_bgr8,
    encoding_info,
    image_to_array,
    image_to_bgr8,
)
from multimodal_perception.ros_pkg.limits import MessageLimits

ENCODING = st.sampled_from(
    [*ENCODINGS, "8UC1", "8UC3", "8UC4", "16UC1", "32FC1", "64FC3", "8SC2", "8FC1", "8UC300", "?"]
)


@fuzz(200)
@given(
    encoding=ENCODING,
    height=SIDE,
    width=SIDE,
    pad=st.integers(0, 5) | st.integers(0, 5) | U32,
    data_delta=st.one_of(st.just(0), st.integers(-3, 3)),
    big=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_image(encoding, height, width, pad, data_delta, big, seed):
    try:
        bpp = encoding_info(encoding).bytes_per_pixel
    except MessageError:
        bpp = 1
    step = min(width * bpp + pad, 2**32 - 1)
    size = max(0, min(step * height, 1 << 20) + data_delta)
    msg = roundtrip(
        TS,
        F.make(
            "sensor_msgs/msg/Image",
            header=header(),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=int(big),
            step=step,
            data=noise(seed, size),
        ),
    )
    pixels, peak = traced(lambda: decode(image_to_array, msg, LIMITS))
    assert peak <= 2 * LIMITS.max_image_bytes + 65536
    bgr, peak = traced(lambda: decode(image_to_bgr8, msg, LIMITS))
    assert peak <= 4 * LIMITS.max_image_bytes + 65536
    if pixels is not None:
        info = encoding_info(encoding)
        assert 0 < height <= LIMITS.max_image_side and 0 < width <= LIMITS.max_image_side
        assert pixels.shape[:2] == (height, width) and pixels.dtype == info.dtype
        assert pixels.dtype.isnative
    if bgr is not None:
        assert bgr.shape == (height, width, 3) and bgr.dtype == np.uint8


# --- compressed images -------------------------------------------------------------------


def sof_offset(jpeg: bytes) -> int:
    """Where the frame header is, by an independent walk of the segments."""
    i = 2
    while jpeg[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return i


def craft_jpeg(
    width: int, height: int, app_bytes: int = 0, progressive: bool = False, fill: int = 0
) -> bytes:
    """A real JPEG whose SOF declares ``width x height``, after ``app_bytes`` of APP5
    segments and ``fill`` 0xFF fill bytes."""
    base = bytearray(encoded(".jpg", progressive))
    sof = sof_offset(bytes(base))
    base[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    segments = b""
    while app_bytes > 0:
        n = min(app_bytes, 65533)
        segments += b"\xff\xe5" + (n + 2).to_bytes(2, "big") + bytes(n)
        app_bytes -= n
    return bytes(base[:2] + segments + base[2:sof] + b"\xff" * fill + base[sof:])


def craft_png(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A real PNG whose IHDR (with a valid CRC) declares the given size and format."""
    png = bytearray(encoded(".png"))
    png[16:26] = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, colour])
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    return bytes(png)


@contextmanager
def opencv_guard(allowed: Callable[[], bool]) -> Iterator[list[int]]:
    """Fail the moment OpenCV is asked to decode a stream ``allowed()`` refuses."""
    real, calls = cv2.imdecode, []

    def spy(buf: np.ndarray, flags: int) -> Any:
        assert allowed(), "cv2.imdecode called on a stream declaring a size over the caps"
        calls.append(len(buf))
        return real(buf, flags)

    with mock.patch.object(cv2, "imdecode", spy):
        yield calls


def within_caps(width: int, height: int, limits: MessageLimits) -> bool:
    side_ok = max(width, height) <= limits.max_image_side
    return side_ok and width * height * 3 <= limits.max_image_bytes


@fuzz(150)
@given(
    kind=st.sampled_from(["jpeg", "jpeg_progressive", "png"]),
    width=st.one_of(st.integers(0, 300), st.integers(0, 65535)),
    height=st.one_of(st.integers(0, 300), st.integers(0, 65535)),
    app_bytes=st.one_of(st.just(0), st.integers(0, 70_000)),
    fill=st.integers(0, 3),
    png_format=st.tuples(st.sampled_from([1, 8, 16, 3]), st.sampled_from([0, 2, 3, 4, 6, 5])),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    seed=st.integers(0, 2**16),
)
def test_fuzz_crafted_headers(kind, width, height, app_bytes, fill, png_format, cut, seed):
    if kind == "png":
        data = craft_png(width, height, *png_format)
        header_end = 33
    else:
        data = craft_jpeg(width, height, app_bytes, kind.endswith("progressive"), fill)
        sof = b"\xff\xc2" if kind.endswith("progressive") else b"\xff\xc0"
        header_end = data.index(sof + b"\x00\x11\x08" + height.to_bytes(2, "big")) + 19
    if cut is not None:  # garbage over the scan data, or a truncated stream (header kept)
        data = data[: max(len(data) - cut, header_end)] + noise(seed, cut % 64).tobytes()
    with opencv_guard(lambda: within_caps(width, height, LIMITS)):
        image = decode(compressed_to_bgr8, compressed(data, kind), LIMITS)
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] in ((height, width), (width, height))


PREFIXES = [b"", b"\xff\xd8", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"RIFF"]


@fuzz(200)
@given(
    prefix=st.one_of(
        st.sampled_from(PREFIXES),
        st.builds(lambda n: encoded(".jpg")[:n], st.integers(0, 700)),
        st.builds(lambda n: encoded(".png")[:n], st.integers(0, 200)),
    ),
    body=st.binary(max_size=300),
    fmt=st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8", "rgb8; compressedDepth"]),
)
def test_fuzz_compressed_bytes(prefix, body, fmt):
    data = prefix + body
    image = decode(compressed_to_bgr8, compressed(data, fmt), LIMITS)
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert max(image.shape[:2]) <= LIMITS.max_image_side


def test_jpeg_size_declared_past_64_kib_is_refused_before_decoding():
    """Finding: the SOF after a 70 KiB APP segment was never read (the header peek stopped
    at 64 KiB): 60000x60000 ended in an uncaught cv2.error, smaller sizes were decoded."""
    for limits, side in ((MessageLimits(), 60000), (LIMITS, 2000)):
        msg = compressed(craft_jpeg(side, side, app_bytes=70 * 1024))
        with opencv_guard(lambda: False), pytest.raises(SizeLimitError) as info:
            compressed_to_bgr8(msg, limits)
        assert info.value.field == "data" and f"{side}x{side}" in str(info.value)


def test_png_decoded_size_is_capped_not_only_its_side():
    """Finding: a 16384x16384 16-bit RGBA PNG passed the side cap and took 3.7 GB."""
    msg = compressed(craft_png(16384, 16384, depth=16, colour=6), "png")
    with opencv_guard(lambda: False), pytest.raises(SizeLimitError, match="decoding needs"):
        compressed_to_bgr8(msg)


def test_stream_opencv_would_read_as_another_format_is_refused():
    """A BMP header sent as "jpeg" declaring 60000x60000: OpenCV would decode it by its
    own signature, past every cap; only JPEG and PNG are handed to OpenCV."""
    bmp = b"BM" + bytes(16) + (60000).to_bytes(4, "little") * 2 + bytes(40)
    with opencv_guard(lambda: False), pytest.raises(EncodingError, match="BMP") as info:
        compressed_to_bgr8(compressed(bmp))
    assert info.value.field == "data"
    with opencv_guard(lambda: False), pytest.raises(LayoutError, match="neither"):
        compressed_to_bgr8(compressed(bytes(range(256)) * 8))


def test_opencv_errors_become_layout_errors():
    def broken(buf: np.ndarray, flags: int) -> None:
        raise cv2.error("OpenCV(5.0) imgcodecs: out of memory")

    with mock.patch.object(cv2, "imdecode", broken), pytest.raises(LayoutError) as info:
        compressed_to_bgr8(compressed(encoded(".jpg")))
    assert info.value.field == "data" and "out of memory" in str(info.value)


@pytest.mark.parametrize("size", [(0, 16), (16, 0)])
def test_zero_sized_compressed_images_are_layout_errors(size):
    for data in (craft_jpeg(*size), craft_png(*size)):
        with opencv_guard(lambda: False), pytest.raises(LayoutError, match="empty"):
            compressed_to_bgr8(compressed(data))


# --- point clouds -------------------------------------------------------------------------
