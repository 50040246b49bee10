"""Image <-> numpy without cv_bridge: every supported encoding, row padding, compressed, and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slimseg_ros.errors import SlimsegError
from slimseg_ros.image_codec import compressed_to_rgb, fill_image, image_to_rgb

msg_module = pytest.importorskip("sensor_msgs.msg", reason="ROS 2 sensor_msgs wheels not installed")
Image, CompressedImage = msg_module.Image, msg_module.CompressedImage


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
    with pytest.raises(SlimsegError, match="could not decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
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
