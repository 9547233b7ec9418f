"""sensor_msgs/Image and CompressedImage: every encoding round-trips against OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import roundtrip
from multimodal_perception.ros_pkg.errors import EncodingError, LayoutError, SizeLimitError
from multimodal_perception.ros_pkg.image import (
    array_to_image,
    bgr8_to_compressed,
    compressed_to_bgr8,
    image_to_array,
    image_to_bgr8,
)
from multimodal_perception.ros_pkg.limits import MessageLimits


def scene_bgr(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth colour image (demosaicing is exact only where colour varies slowly)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h) + 60], axis=2)
    return img.astype(np.uint8)


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image through a Bayer colour filter named ROS-style (first row first)."""
    channel = {"r": 2, "g": 1, "b": 0}
    out = np.empty(bgr.shape[:2], dtype=bgr.dtype)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern, strict=True):
        out[dy::2, dx::2] = bgr[dy::2, dx::2, channel[colour]]
    return out


def build(factory, typestore, pixels, encoding, **kw):
    msg = array_to_image(pixels, encoding, factory=factory, stamp_ns=5, frame_id="cam", **kw)
    return roundtrip(typestore, msg)


@pytest.mark.parametrize(
    ("encoding", "convert"),
    [
        ("bgr8", None),
        ("rgb8", cv2.COLOR_BGR2RGB),
        ("bgra8", cv2.COLOR_BGR2BGRA),
        ("rgba8", cv2.COLOR_BGR2RGBA),
        ("mono8", cv2.COLOR_BGR2GRAY),
    ],
)
@pytest.mark.parametrize("step_pad", [0, 13])
def test_8bit_encodings_round_trip_and_convert_like_opencv(
    factory, typestore, encoding, convert, step_pad
):
    bgr = scene_bgr()
    pixels = bgr if convert is None else cv2.cvtColor(bgr, convert)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    step = bgr.shape[1] * channels + step_pad
    msg = build(factory, typestore, pixels, encoding, step=step)
    assert msg.step == step and len(msg.data) == step * msg.height
    parsed = image_to_array(msg)
    np.testing.assert_array_equal(parsed, pixels)
    # Parsing is a view on the message buffer, padded rows included.
    assert np.shares_memory(parsed, msg.data)
    expected = bgr if encoding != "mono8" else cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(image_to_bgr8(msg), expected)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize(
    ("encoding", "dtype"), [("mono16", np.uint16), ("16UC1", np.uint16), ("32FC1", np.float32)]
)
def test_16_and_32_bit_encodings_both_endians(factory, typestore, encoding, dtype, big_endian):
    rng = np.random.default_rng(1)
    if dtype == np.float32:
        pixels = rng.uniform(0.2, 80.0, (30, 41)).astype(np.float32)
        pixels[3, 4] = np.nan  # depth images carry NaN for no return
    else:
        pixels = rng.integers(0, 65535, (30, 41), dtype=np.uint16)
    msg = build(factory, typestore, pixels, encoding, is_bigendian=big_endian, step=41 * 4 + 8)
    assert bool(msg.is_bigendian) == big_endian
    raw = np.frombuffer(
        bytes(msg.data[: pixels.itemsize]),
        dtype=pixels.dtype.newbyteorder(">" if big_endian else "<"),
    )
    np.testing.assert_array_equal(raw[0], pixels[0, 0])  # the bytes really are in that order
    parsed = image_to_array(msg)
    assert parsed.dtype == np.dtype(dtype) and parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, pixels)
    if encoding == "mono16":
        np.testing.assert_array_equal(
            image_to_bgr8(msg), cv2.cvtColor((pixels >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        )
    else:
        with pytest.raises(EncodingError, match="not colour"):
            image_to_bgr8(msg)


@pytest.mark.parametrize(
    ("pattern", "cv_code"),
    [
        ("rggb", cv2.COLOR_BayerBG2BGR),
        ("bggr", cv2.COLOR_BayerRG2BGR),
        ("gbrg", cv2.COLOR_BayerGR2BGR),
        ("grbg", cv2.COLOR_BayerGB2BGR),
    ],
)
def test_bayer_demosaic_matches_opencv_and_recovers_colour(factory, typestore, pattern, cv_code):
    bgr = scene_bgr()
    raw = mosaic(bgr, pattern)
    msg = build(factory, typestore, raw, f"bayer_{pattern}8")
    np.testing.assert_array_equal(image_to_array(msg), raw)
    out = image_to_bgr8(msg)
    np.testing.assert_array_equal(out, cv2.cvtColor(raw, cv_code))
    # The pattern mapping is right, not merely consistent: a pure colour survives.
    for colour in ([0, 0, 255], [255, 0, 0], [0, 255, 0]):
        flat = np.full((16, 16, 3), colour, dtype=np.uint8)
        flat_msg = build(factory, typestore, mosaic(flat, pattern), f"bayer_{pattern}8")
        centre = image_to_bgr8(flat_msg)[4:12, 4:12].reshape(-1, 3)
        assert np.abs(centre.astype(int) - colour).max() <= 1, (pattern, colour)
    # Interior of a smooth image: demosaicing recovers it closely.
    err = np.abs(out[4:-4, 4:-4].astype(int) - bgr[4:-4, 4:-4]).mean()
    assert err < 3.0


def test_bayer16(factory, typestore):
    raw16 = (mosaic(scene_bgr(), "rggb").astype(np.uint16) << 8) | 0x7F
    msg = build(factory, typestore, raw16, "bayer_rggb16")
    np.testing.assert_array_equal(image_to_array(msg), raw16)
    # Demosaiced at full depth, then reduced to 8 bits.
    expected = (cv2.cvtColor(raw16, cv2.COLOR_BayerBG2BGR) >> 8).astype(np.uint8)
    np.testing.assert_array_equal(image_to_bgr8(msg), expected)


@pytest.mark.parametrize(
    ("encoding", "to_yuv", "to_bgr"),
    [
        ("yuv422", cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
        ("uyvy", cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
        ("yuv422_yuy2", cv2.COLOR_BGR2YUV_YUYV, cv2.COLOR_YUV2BGR_YUYV),
        ("yuyv", cv2.COLOR_BGR2YUV_YUYV, cv2.COLOR_YUV2BGR_YUYV),
    ],
)
def test_yuv422_round_trip(factory, typestore, encoding, to_yuv, to_bgr):
    bgr = scene_bgr()
    packed = cv2.cvtColor(bgr, to_yuv)
    assert packed.shape == (*bgr.shape[:2], 2)
    msg = build(factory, typestore, packed, encoding)
    np.testing.assert_array_equal(image_to_array(msg), packed)
    out = image_to_bgr8(msg)
    np.testing.assert_array_equal(out, cv2.cvtColor(packed, to_bgr))
    assert np.abs(out.astype(int) - bgr).mean() < 4.0


@pytest.mark.parametrize("fmt", ["jpeg", "png", "bgr8; jpeg compressed bgr8"])
def test_compressed_round_trip(factory, typestore, fmt):
    bgr = scene_bgr(120, 160)
    msg = roundtrip(
        typestore, bgr8_to_compressed(bgr, fmt, factory=factory, stamp_ns=1, frame_id="cam")
    )
    out = compressed_to_bgr8(msg)
    assert out.shape == bgr.shape
    if "png" in fmt:
        np.testing.assert_array_equal(out, bgr)
    else:
        np.testing.assert_array_equal(out, cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR))
        assert np.abs(out.astype(int) - bgr).mean() < 3.0


class FakeImage:
    """A message with chosen (possibly inconsistent) fields, as a corrupt bag could hold."""

    def __init__(self, **fields):
        self.__dict__.update(
            dict(height=4, width=4, encoding="mono8", is_bigendian=0, step=4, data=bytes(16))
        )
        self.__dict__.update(fields)


@pytest.mark.parametrize(
    ("fields", "error", "field_name"),
    [
        ({"data": bytes(15)}, LayoutError, "data"),
        ({"step": 3}, LayoutError, "step"),
        ({"encoding": "bgr9"}, EncodingError, "encoding"),
        ({"encoding": "yuv422", "width": 3, "step": 6, "data": bytes(24)}, LayoutError, "width"),
        ({"height": 100_000, "step": 100_000, "width": 100_000}, SizeLimitError, "height"),
        ({"height": 10_000, "width": 10_000, "step": 10_000}, SizeLimitError, "step"),
        ({"height": -1}, LayoutError, "height"),
    ],
)
def test_malformed_image_raises_typed_error_naming_field(fields, error, field_name):
    limits = MessageLimits(max_image_side=20_000, max_image_bytes=50_000_000)
    with pytest.raises(error) as info:
        image_to_array(FakeImage(**fields), limits)
    assert info.value.field == field_name
    assert "sensor_msgs/msg/Image." + field_name in str(info.value)


def test_compressed_malformed():
    class Compressed:
        def __init__(self, fmt, data):
            self.format, self.data = fmt, data

    with pytest.raises(EncodingError):
        compressed_to_bgr8(Compressed("tiff", b"x"))
    with pytest.raises(LayoutError, match="not a JPEG marker") as info:
        compressed_to_bgr8(Compressed("jpeg", b"\xff\xd8garbage" * 10))
    assert info.value.field == "data"
    # A PNG header declaring a 100000 px wide image is refused before decoding.
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (100_000).to_bytes(4, "big") * 2
    with pytest.raises(SizeLimitError):
        compressed_to_bgr8(Compressed("png", header + b"\x08\x02" + bytes(20)))


@pytest.mark.parametrize("field_name", ["height", "width"])
def test_zero_sized_image_is_a_layout_error(field_name):
    """Finding: a 0-row image decoded to an empty array and failed later as an unexplained
    processing_error; it is refused at decode, naming the field."""
    msg = FakeImage(**{field_name: 0, "data": b"" if field_name == "height" else bytes(16)})
    for decoder in (image_to_array, image_to_bgr8):
        with pytest.raises(LayoutError) as info:
            decoder(msg)
        assert info.value.field == field_name and info.value.value == 0
