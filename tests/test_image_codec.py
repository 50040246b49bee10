"""Image <-> numpy: every accepted encoding against OpenCV and known pixels, cv_bridge parity, row padding,
byte order, compressed, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from slimseg_ros.errors import SlimsegError
from slimseg_ros.image_codec import (
    CV_BRIDGE,
    ENCODINGS,
    SUPPORTED_ENCODINGS,
    compressed_to_rgb,
    declared_size,
    fill_image,
    image_to_rgb,
)

msg_module = pytest.importorskip("sensor_msgs.msg", reason="ROS 2 sensor_msgs wheels not installed")
Image, CompressedImage = msg_module.Image, msg_module.CompressedImage
sys.path.insert(0, str(Path(__file__).parent))
from camera_encodings import REFERENCE, encode, fill_raw, mosaic, reference_rgb, yuv422  # noqa: E402


def _rgb(height: int = 5, width: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _raw(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(height, width * channels)
    padded = np.concatenate([rows, np.full((height, pad), 77, dtype=np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels + pad)
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_round_trip_and_padding(pad: int) -> None:
    rgb = _rgb()
    out = image_to_rgb(_raw(rgb, "rgb8", pad))
    assert out.shape == rgb.shape and np.array_equal(out, rgb)


def test_unpadded_rgb8_is_a_view_of_the_message_buffer() -> None:
    msg = _raw(_rgb(), "rgb8")
    out = image_to_rgb(msg)
    assert not out.flags.owndata and out.base is not None


@pytest.mark.parametrize(
    "encoding, convert",
    [
        ("bgr8", lambda rgb: rgb[..., ::-1]),
        ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])),
        ("bgra8", lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)])),
    ],
)
def test_colour_encodings_decode_to_rgb(encoding: str, convert) -> None:
    rgb = _rgb()
    out = image_to_rgb(_raw(np.ascontiguousarray(convert(rgb)), encoding, pad=2))
    assert np.array_equal(out, rgb)


def test_mono8_becomes_grey_rgb() -> None:
    grey = _rgb()[..., 0].copy()
    out = image_to_rgb(_raw(grey, "mono8", pad=1))
    assert out.shape == (*grey.shape, 3)
    assert all(np.array_equal(out[..., c], grey) for c in range(3))


def test_unsupported_encoding_is_a_clear_error() -> None:
    msg = _raw(_rgb(), "rgb8")
    msg.encoding = "16UC1"
    with pytest.raises(SlimsegError, match="unsupported image encoding '16UC1'"):
        image_to_rgb(msg)


def test_truncated_or_inconsistent_messages_are_errors() -> None:
    msg = _raw(_rgb(), "rgb8")
    msg.data = bytes(10)
    with pytest.raises(SlimsegError, match="truncated"):
        image_to_rgb(msg)
    msg = _raw(_rgb(), "rgb8")
    msg.step = 4
    with pytest.raises(SlimsegError, match="step"):
        image_to_rgb(msg)
    msg.width = 0
    with pytest.raises(SlimsegError, match="size"):
        image_to_rgb(msg)


@pytest.mark.parametrize(
    "fmt, ext", [("jpeg", ".jpg"), ("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg")]
)
def test_compressed_decodes(fmt: str, ext: str) -> None:
    ramp = np.linspace(0, 255, 24, dtype=np.uint8)[None, :].repeat(16, axis=0)
    rgb = np.dstack([ramp, ramp[:, ::-1], np.full_like(ramp, 90)])  # smooth, so jpeg is near-lossless
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    out = compressed_to_rgb(CompressedImage(format=fmt, data=data.tobytes()))
    assert out.shape == rgb.shape
    tolerance = 0 if ext == ".png" else 12
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= tolerance


def test_compressed_bad_payload_and_format() -> None:
    with pytest.raises(SlimsegError, match="no readable PNG/JPEG header"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SlimsegError, match="could not decode"):  # a header, then garbage
        compressed_to_rgb(CompressedImage(format="jpeg", data=data.tobytes()[:200] + b"\x00" * 10))
    with pytest.raises(SlimsegError, match="no data"):
        compressed_to_rgb(CompressedImage(format="png", data=b""))
    with pytest.raises(SlimsegError, match="unsupported compressed format"):
        compressed_to_rgb(CompressedImage(format="theora", data=b"x"))


def test_fill_image_mono8_and_rgb8() -> None:
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = fill_image(Image(), labels, "mono8")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (3, 4, 4, "mono8")
    assert np.array_equal(np.frombuffer(msg.data, np.uint8).reshape(3, 4), labels)
    rgb = _rgb()
    assert np.array_equal(image_to_rgb(fill_image(Image(), rgb, "rgb8")), rgb)
    with pytest.raises(SlimsegError, match="cannot be published"):
        fill_image(Image(), rgb, "mono8")
    with pytest.raises(SlimsegError, match="cannot publish"):
        fill_image(Image(), labels.astype(np.int32), "mono8")


# --- the encodings a camera driver publishes --------------------------------------------------------------
def test_every_accepted_encoding_has_an_independent_reference() -> None:
    assert set(SUPPORTED_ENCODINGS) == set(REFERENCE)
    assert {"yuv422", "uyvy", "yuyv", "yuv422_yuy2", "mono16", "8UC3"} <= set(SUPPORTED_ENCODINGS)
    assert {f"bayer_{p}8" for p in ("rggb", "bggr", "gbrg", "grbg")} <= set(SUPPORTED_ENCODINGS)


def _scene(height: int = 6, width: int = 8) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 3])
def test_each_encoding_decodes_as_opencv_does(encoding: str, pad: int) -> None:
    """The own converter equals OpenCV's reference conversion of the same samples, padded rows too."""
    samples = encode(_scene(), encoding)
    out = image_to_rgb(fill_raw(Image(), samples, encoding, pad=pad), use_cv_bridge=False)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert np.array_equal(out, reference_rgb(samples, encoding))


def test_yuv422_known_pixels_in_both_byte_orders() -> None:
    """Video-range BT.601: Y 16 is black, Y 235 white, U = V = 128 grey; UYVY and YUYV differ in order."""
    white_black = np.array([[[128, 235], [128, 235], [128, 16], [128, 16]]], np.uint8)  # U Y V Y U Y V Y
    expect = np.array([[[255] * 3, [255] * 3, [0] * 3, [0] * 3]], np.uint8)
    for name in ("uyvy", "yuv422"):
        assert np.array_equal(image_to_rgb(fill_raw(Image(), white_black, name), use_cv_bridge=False), expect)
    swapped = np.ascontiguousarray(white_black[..., ::-1])  # Y U Y V ...
    for name in ("yuyv", "yuv422_yuy2"):
        assert np.array_equal(image_to_rgb(fill_raw(Image(), swapped, name), use_cv_bridge=False), expect)


@pytest.mark.parametrize("order, name", [("UYVY", "uyvy"), ("YUYV", "yuyv")])
def test_yuv422_colours_come_back(order: str, name: str) -> None:
    colours = np.array([[[200, 30, 40], [200, 30, 40], [20, 180, 60], [20, 180, 60]]], np.uint8)
    out = image_to_rgb(fill_raw(Image(), yuv422(colours, order), name), use_cv_bridge=False)
    assert np.abs(out.astype(int) - colours).max() <= 2, out


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GBRG", "GRBG"])
def test_bayer_of_a_plain_colour_demosaics_to_that_colour(pattern: str) -> None:
    """A uniform scene gives its exact colour whatever the interpolation: a wrong pattern swaps channels."""
    scene = np.empty((8, 10, 3), np.uint8)
    scene[:] = (200, 100, 30)
    msg = fill_raw(Image(), mosaic(scene, pattern), f"bayer_{pattern.lower()}8")
    assert np.array_equal(image_to_rgb(msg, use_cv_bridge=False), scene)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_mono16_scales_like_cv_bridge_in_either_byte_order(big_endian: bool, pad: int) -> None:
    """255/65535 with rounding (cv_bridge's convertTo): 257 -> 1, 128 -> 0, 129 -> 1, 1000 -> 4."""
    samples = np.array([[0, 257, 65535], [1000, 128, 129]], np.uint16)
    msg = fill_raw(Image(), samples, "mono16", pad=pad, big_endian=big_endian)
    out = image_to_rgb(msg, use_cv_bridge=False)
    grey = np.array([[0, 1, 255], [4, 0, 1]], np.uint8)
    assert out.shape == (2, 3, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))


def test_mono16_rounding_over_every_value() -> None:
    samples = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    out = image_to_rgb(fill_raw(Image(), samples, "mono16"), use_cv_bridge=False)
    assert np.array_equal(out[..., 0], ((samples.astype(np.int64) + 128) // 257).astype(np.uint8))


def test_8uc3_is_bgr_and_names_match_case_insensitively() -> None:
    bgr = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)
    for name in ("8UC3", "8uc3"):
        out = image_to_rgb(fill_raw(Image(), bgr, name), use_cv_bridge=False)
        assert out.tolist() == [[[30, 20, 10], [60, 50, 40]]]
    grey = np.array([[0, 65535]], np.uint16)
    assert image_to_rgb(fill_raw(Image(), grey, "MONO16"), use_cv_bridge=False)[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("encoding", ["16UC1", "nv12", "32FC1", "bayer_rggb16", ""])
def test_other_encodings_are_refused_with_the_list(encoding: str) -> None:
    msg = fill_raw(Image(), np.zeros((2, 4), np.uint8), "mono8")
    msg.encoding = encoding
    with pytest.raises(SlimsegError, match=f"unsupported image encoding '{encoding}'.*yuyv"):
        image_to_rgb(msg)


def test_odd_width_yuv422_and_short_16_bit_rows_are_errors() -> None:
    msg = fill_raw(Image(), np.zeros((2, 3, 2), np.uint8), "yuyv")
    with pytest.raises(SlimsegError, match="odd width 3"):
        image_to_rgb(msg)
    msg = fill_raw(Image(), np.zeros((2, 3), np.uint16), "mono16")
    msg.step = 5  # 3 16-bit samples need 6 bytes
    with pytest.raises(SlimsegError, match="step 5 is smaller than width"):
        image_to_rgb(msg)


def test_fill_image_refuses_a_layout_that_does_not_fit_the_encoding() -> None:
    with pytest.raises(SlimsegError, match="cannot be published as mono16"):
        fill_image(Image(), np.zeros((2, 2), np.uint8), "mono16")


# --- cv_bridge and the own converter ----------------------------------------------------------------------
@pytest.mark.skipif(CV_BRIDGE is None, reason="cv_bridge is not importable here (no ROS 2 install sourced)")
@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad, big_endian", [(0, False), (3, False), (2, True)])
def test_cv_bridge_and_own_converter_give_the_same_pixels(encoding: str, pad: int, big_endian: bool) -> None:
    msg = fill_raw(Image(), encode(_scene(12, 16), encoding), encoding, pad=pad, big_endian=big_endian)
    bridged, own = image_to_rgb(msg, use_cv_bridge=True), image_to_rgb(msg, use_cv_bridge=False)
    assert bridged.shape == own.shape and np.array_equal(bridged, own), encoding


@pytest.mark.skipif(CV_BRIDGE is not None, reason="cv_bridge is importable: the default is cv_bridge")
def test_without_cv_bridge_the_own_converter_is_the_default() -> None:
    from slimseg_ros import image_codec

    assert image_codec.DECODER == "own"
    msg = fill_raw(Image(), encode(_scene(), "bayer_rggb8"), "bayer_rggb8")
    assert np.array_equal(image_to_rgb(msg), image_to_rgb(msg, use_cv_bridge=False))
    with pytest.raises(SlimsegError, match="cv_bridge is not importable"):
        image_to_rgb(msg, use_cv_bridge=True)


def test_table_rows_are_consistent() -> None:
    for name, spec in ENCODINGS.items():
        assert spec.channels in (1, 2, 3, 4) and spec.dtype in (np.uint8, np.uint16), name
        assert (spec.to_rgb is None) == (name == "rgb8"), name


def test_image_buffer_publishes_what_was_written_in_place() -> None:
    """The view aliases the message's own data (what rclpy serialises), for both settings of the message
    classes' field checks; a new size reallocates, the same size reuses the buffer."""
    from rclpy.serialization import deserialize_message, serialize_message

    from slimseg_ros.image_codec import ImageBuffer

    rng = np.random.default_rng(3)
    for check in (False, True):
        buffer = ImageBuffer(lambda check=check: Image(check_fields=check), "rgb8")
        pixels = buffer.pixels((6, 9, 3))
        pixels[...] = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
        assert np.shares_memory(pixels, np.frombuffer(buffer.message(Image().header).data, np.uint8))
        header = Image().header
        header.frame_id = "cam"
        wire = deserialize_message(serialize_message(buffer.message(header)), Image)
        assert wire.header.frame_id == "cam" and (wire.height, wire.width, wire.step) == (6, 9, 27)
        assert np.array_equal(image_to_rgb(wire), pixels)
        assert buffer.pixels((6, 9, 3)) is pixels
        assert buffer.pixels((4, 4, 3)).shape == (4, 4, 3)
    labels = ImageBuffer(Image, "mono8")
    labels.pixels((3, 5))[...] = 7
    wire = deserialize_message(serialize_message(labels.message(Image().header)), Image)
    assert wire.encoding == "mono8" and bytes(wire.data) == bytes([7] * 15)
    with pytest.raises(SlimsegError, match="cannot be published as rgb8"):
        ImageBuffer(Image, "rgb8").pixels((3, 5))
    with pytest.raises(SlimsegError, match="before pixels"):
        ImageBuffer(Image, "rgb8").message(Image().header)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_declared_size_is_read_from_the_header(ext: str) -> None:
    ok, data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))
    assert ok and declared_size(data.tobytes()) == (53, 37)


def test_compressed_frame_beyond_the_pixel_limit_is_refused_before_decoding() -> None:
    """Issue 16 #11: a small PNG that declares 10000x10000 is refused from its header, not decoded."""
    ok, data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    raw = bytearray(data.tobytes())
    raw[16:24] = (10000).to_bytes(4, "big") + (10000).to_bytes(4, "big")  # IHDR width, height
    msg = CompressedImage(format="png", data=bytes(raw))
    limit = r"10000x10000 = 100000000 pixels exceeds max_input_pixels = 8294400"
    with pytest.raises(SlimsegError, match=limit):
        compressed_to_rgb(msg, max_pixels=3840 * 2160)
    ok, small = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    out = compressed_to_rgb(CompressedImage(format="png", data=small.tobytes()), max_pixels=16)
    assert out.shape == (4, 4, 3)
