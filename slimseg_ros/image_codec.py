"""sensor_msgs Image / CompressedImage <-> numpy without cv_bridge (not available as a wheel).

Works on any object with the message's fields, so it needs no ROS import and is testable alone. The hot
path avoids copies: an rgb8 frame with no row padding becomes a read-only numpy view of the message buffer;
other encodings cost one OpenCV colour conversion. Bad frames raise `SlimsegError` (the node counts them
as drops and keeps running).
"""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np

from slimseg_ros.errors import SlimsegError

# encoding -> (channels, OpenCV conversion to RGB or None when already RGB)
_DECODERS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_DECODERS)
SUPPORTED_COMPRESSED: tuple[str, ...] = ("jpeg", "png")


def image_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/Image into HxWx3 uint8 RGB (a zero-copy view for unpadded rgb8)."""
    encoding = str(msg.encoding).lower()
    if encoding not in _DECODERS:
        raise SlimsegError(
            f"unsupported image encoding '{msg.encoding}'",
            f"publish one of {', '.join(SUPPORTED_ENCODINGS)} (or set compressed:=true for jpeg/png)",
        )
    channels, conversion = _DECODERS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * channels
    if height <= 0 or width <= 0:
        raise SlimsegError(f"image has size {width}x{height}", "width and height must be positive")
    if step < row:
        raise SlimsegError(
            f"image step {step} is smaller than width*channels = {row} for {encoding}",
            "the publisher filled step wrongly",
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < step * height:
        raise SlimsegError(
            f"image data has {buffer.size} bytes, expected step*height = {step * height}",
            "the message is truncated or its height/step are wrong",
        )
    rows = buffer[: step * height].reshape(height, step)[:, :row]
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if conversion is None:
        return pixels
    return cv2.cvtColor(pixels, conversion)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg/png) into HxWx3 uint8 RGB."""
    fmt = str(msg.format).lower()
    if not any(kind in fmt for kind in (*SUPPORTED_COMPRESSED, "jpg")):
        raise SlimsegError(
            f"unsupported compressed format '{msg.format}'",
            "image_transport's jpeg or png plugins are supported",
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise SlimsegError("compressed image has no data", "check the publisher")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise SlimsegError(
            f"could not decode {data.size} bytes of '{msg.format}' data",
            "the payload is corrupt or not jpeg/png",
        )
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def fill_image(msg: Any, pixels: np.ndarray, encoding: str) -> Any:
    """Fill an Image message's size fields and data from a uint8 HxW or HxWx3 array (one copy, no loop)."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise SlimsegError(
            f"cannot publish array of shape {pixels.shape} dtype {pixels.dtype}",
            "expected uint8 HxW or HxWx3",
        )
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    expected = _DECODERS.get(encoding, (None,))[0]
    if expected != channels:
        raise SlimsegError(f"{channels}-channel array cannot be published as {encoding}", "pick the encoding")
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels))
    msg.data = data
    return msg
