"""sensor_msgs Image / CompressedImage <-> numpy, through cv_bridge when it is importable.

cv_bridge is ROS's reference converter, but it is no PyPI wheel, so the package carries its own converter
as the fallback. Both take the encoding's row in ENCODINGS (the one table of accepted encodings): its
sample type, the channels as stored, and the OpenCV conversion to RGB, which is the code cv_bridge uses for
that pair. Both also start from the same validated, unpadded samples, so they give the same pixels.

Works on any object with the message's fields, so it needs no ROS import and is testable alone. The hot
path avoids copies: an rgb8 frame with no row padding becomes a read-only numpy view of the message buffer
(nothing to convert, so cv_bridge is not called); other encodings cost one OpenCV conversion. Bad frames
raise `SlimsegError` (the node counts them as drops and keeps running).
"""

from __future__ import annotations

import array
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from slimseg_ros.errors import SlimsegError


@dataclass(frozen=True)
class Encoding:
    """One accepted sensor_msgs/Image encoding: how its bytes are laid out and how they become RGB."""

    dtype: type  # sample type: np.uint8, or np.uint16 (scaled to 8 bits by 255/65535, as cv_bridge does)
    channels: int  # samples per pixel as stored (4:2:2 YUV: 2, Bayer: 1)
    to_rgb: int | None  # OpenCV cvtColor code to RGB (cv_bridge's code for the pair); None: already RGB
    bridge_name: str  # the name cv_bridge knows (it predates the uyvy / yuyv names)
    bridge_converts: bool = True  # False: cv_bridge refuses "8UC3 -> rgb8" (no colour order), so passthrough


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(np.uint8, 3, None, "rgb8"),
    "bgr8": Encoding(np.uint8, 3, cv2.COLOR_BGR2RGB, "bgr8"),
    "rgba8": Encoding(np.uint8, 4, cv2.COLOR_RGBA2RGB, "rgba8"),
    "bgra8": Encoding(np.uint8, 4, cv2.COLOR_BGRA2RGB, "bgra8"),
    "mono8": Encoding(np.uint8, 1, cv2.COLOR_GRAY2RGB, "mono8"),
    "mono16": Encoding(np.uint16, 1, cv2.COLOR_GRAY2RGB, "mono16"),
    "uyvy": Encoding(np.uint8, 2, cv2.COLOR_YUV2RGB_UYVY, "yuv422"),
    "yuv422": Encoding(np.uint8, 2, cv2.COLOR_YUV2RGB_UYVY, "yuv422"),  # sensor_msgs' old name of uyvy
    "yuyv": Encoding(np.uint8, 2, cv2.COLOR_YUV2RGB_YUY2, "yuv422_yuy2"),
    "yuv422_yuy2": Encoding(np.uint8, 2, cv2.COLOR_YUV2RGB_YUY2, "yuv422_yuy2"),  # old name of yuyv
    # OpenCV names a Bayer pattern by its second row's 2nd and 3rd pixels: RGGB is "BG"
    "bayer_rggb8": Encoding(np.uint8, 1, cv2.COLOR_BayerBG2RGB, "bayer_rggb8"),
    "bayer_bggr8": Encoding(np.uint8, 1, cv2.COLOR_BayerRG2RGB, "bayer_bggr8"),
    "bayer_gbrg8": Encoding(np.uint8, 1, cv2.COLOR_BayerGR2RGB, "bayer_gbrg8"),
    "bayer_grbg8": Encoding(np.uint8, 1, cv2.COLOR_BayerGB2RGB, "bayer_grbg8"),
    # OpenCV's BGR order: what cv_bridge's cv2_to_imgmsg publishes for a 3-channel array, and rviz shows
    "8UC3": Encoding(np.uint8, 3, cv2.COLOR_BGR2RGB, "8UC3", bridge_converts=False),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(ENCODINGS)
SUPPORTED_COMPRESSED: tuple[str, ...] = ("jpeg", "png")
_BY_LOWER = {name.lower(): name for name in ENCODINGS}
_NATIVE_BIG_ENDIAN = int(sys.byteorder == "big")


def _load_cv_bridge() -> Any:
    """A CvBridge, or None where cv_bridge is not importable (a pip/wheels set-up) or fails to load."""
    try:
        from cv_bridge import CvBridge
    except Exception:  # noqa: BLE001 - ImportError, or a cv_bridge built against another numpy/OpenCV
        return None
    try:
        return CvBridge()
    except Exception:  # noqa: BLE001 - same: fall back to the own converter
        return None


CV_BRIDGE = _load_cv_bridge()
DECODER = "cv_bridge" if CV_BRIDGE is not None else "own"  # which one image_to_rgb uses by default


def encoding_of(msg: Any) -> tuple[str, Encoding]:
    """The message's encoding as named in ENCODINGS (matched case-insensitively) and its row."""
    name = _BY_LOWER.get(str(msg.encoding).lower())
    if name is None:
        raise SlimsegError(
            f"unsupported image encoding '{msg.encoding}'",
            f"publish one of {', '.join(SUPPORTED_ENCODINGS)} (or set compressed:=true for jpeg/png)",
        )
    return name, ENCODINGS[name]


def image_samples(msg: Any) -> tuple[str, np.ndarray]:
    """The encoding name and the message's samples, validated: HxW or HxWxC, row padding (`step`)
    dropped without a copy, 16-bit samples in native byte order (a copy only when they were not)."""
    name, spec = encoding_of(msg)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(spec.dtype).itemsize
    row = width * spec.channels * itemsize
    if height <= 0 or width <= 0:
        raise SlimsegError(f"image has size {width}x{height}", "width and height must be positive")
    if step < row:
        raise SlimsegError(
            f"image step {step} is smaller than width*bytes per pixel = {row} for {name}",
            "the publisher filled step wrongly",
        )
    if spec.channels == 2 and width % 2:
        raise SlimsegError(f"{name} image has odd width {width}", "4:2:2 YUV pairs pixels: use an even width")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < step * height:
        raise SlimsegError(
            f"image data has {buffer.size} bytes, expected step*height = {step * height}",
            "the message is truncated or its height/step are wrong",
        )
    rows = buffer[: step * height].reshape(height, step)[:, :row]
    if itemsize > 1:
        if step % itemsize:  # rows that start off sample alignment cannot be handed to OpenCV as a view
            rows = np.ascontiguousarray(rows)
        order = ">" if getattr(msg, "is_bigendian", 0) else "<"
        rows = rows.view(np.dtype(spec.dtype).newbyteorder(order))
        if not rows.dtype.isnative:
            rows = rows.astype(spec.dtype)
    return name, rows.reshape(height, width, spec.channels) if spec.channels > 1 else rows


def image_to_rgb(msg: Any, use_cv_bridge: bool | None = None) -> np.ndarray:
    """Decode a sensor_msgs/Image into HxWx3 uint8 RGB (a zero-copy view for unpadded rgb8).

    `use_cv_bridge`: None = cv_bridge when importable (DECODER), False = the own converter, True = cv_bridge
    (an error where it is not importable); tests use it to compare the two.
    """
    name, samples = image_samples(msg)
    spec = ENCODINGS[name]
    if spec.to_rgb is None:
        return samples
    if use_cv_bridge and CV_BRIDGE is None:
        raise SlimsegError("cv_bridge is not importable here", "source a ROS 2 install that has cv_bridge")
    bridge = CV_BRIDGE if use_cv_bridge is None or use_cv_bridge else None
    try:
        if bridge is not None:
            return _convert_cv_bridge(bridge, samples, spec)
        return convert_samples(samples, spec)
    except cv2.error as exc:
        raise SlimsegError(f"OpenCV cannot convert this {name} image: {exc}", "check its size") from exc


def convert_samples(samples: np.ndarray, spec: Encoding) -> np.ndarray:
    """The own converter: validated samples -> RGB uint8 with the table's OpenCV conversion."""
    if samples.dtype != np.uint8:  # cv_bridge's 16 -> 8 bit step: convertTo(CV_8U, 255/65535), rounded
        samples = cv2.convertScaleAbs(samples, alpha=255.0 / 65535.0)
    if spec.to_rgb is None:
        return samples
    return cv2.cvtColor(samples, spec.to_rgb)


def _convert_cv_bridge(bridge: Any, samples: np.ndarray, spec: Encoding) -> np.ndarray:
    """cv_bridge's imgmsg_to_cv2 on the validated samples, handed over unpadded and in native byte order:
    its Python side reads `step` in whole pixels only, and its byte swap needs NumPy 1's newbyteorder."""
    data = np.ascontiguousarray(samples)
    view = SimpleNamespace(
        height=data.shape[0], width=data.shape[1], step=data.strides[0], encoding=spec.bridge_name,
        is_bigendian=_NATIVE_BIG_ENDIAN, data=data,
    )
    try:
        if spec.bridge_converts:
            return np.asarray(bridge.imgmsg_to_cv2(view, "rgb8"))
        return cv2.cvtColor(np.asarray(bridge.imgmsg_to_cv2(view, "passthrough")), spec.to_rgb)
    except cv2.error:
        raise
    except Exception as exc:  # noqa: BLE001 - CvBridgeError (a TypeError) and whatever else it raises
        raise SlimsegError(f"cv_bridge: {spec.bridge_name} -> rgb8 failed: {exc}", "check the frame") from exc


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG header declares, read without decoding; None when there is none.

    A small file can declare a huge image (a 95 KB PNG of 10000x10000 decodes to 300 MB), so the size is
    checked against a limit before any decoding allocates it.
    """
    data = bytes(data[:65536]) if len(data) > 65536 else bytes(data)  # headers come first
    if data.startswith(_PNG_SIGNATURE):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return None
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a valid JPEG
            return None
        i += 2 + length
    return None


def check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    """Refuse a frame larger than `max_pixels` (width x height) before it is decoded or converted."""
    if max_pixels is not None and width * height > max_pixels:
        raise SlimsegError(
            f"{what} of {width}x{height} = {width * height} pixels exceeds max_input_pixels = {max_pixels}",
            "send smaller frames or raise the max_input_pixels parameter",
        )


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg/png) into HxWx3 uint8 RGB, after checking the size its
    header declares against `max_pixels` (None: no limit)."""
    fmt = str(msg.format).lower()
    if not any(kind in fmt for kind in (*SUPPORTED_COMPRESSED, "jpg")):
        raise SlimsegError(
            f"unsupported compressed format '{msg.format}'",
            "image_transport's jpeg or png plugins are supported",
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise SlimsegError("compressed image has no data", "check the publisher")
    size = declared_size(memoryview(data))
    if size is None:
        raise SlimsegError(
            f"{data.size} bytes of '{msg.format}' data have no readable PNG/JPEG header",
            "the payload is corrupt or not jpeg/png",
        )
    check_pixels(size[0], size[1], max_pixels, "compressed frame declared")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise SlimsegError(
            f"could not decode {data.size} bytes of '{msg.format}' data",
            "the payload is corrupt or not jpeg/png",
        )
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def fill_image(msg: Any, pixels: np.ndarray, encoding: str) -> Any:
    """Fill an Image message's size fields and data from a uint8 HxW or HxWx3 array (one copy, no loop)."""
    _fill_fields(msg, pixels.shape, pixels.dtype, encoding)
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels))
    msg.data = data
    return msg


def _fill_fields(msg: Any, shape: tuple[int, ...], dtype: np.dtype, encoding: str) -> None:
    if dtype != np.uint8 or len(shape) not in (2, 3):
        raise SlimsegError(
            f"cannot publish array of shape {shape} dtype {dtype}", "expected uint8 HxW or HxWx3"
        )
    channels = 1 if len(shape) == 2 else shape[2]
    spec = ENCODINGS.get(encoding)
    if spec is None or spec.dtype is not np.uint8 or spec.channels != channels:
        raise SlimsegError(f"{channels}-channel array cannot be published as {encoding}", "pick the encoding")
    msg.height, msg.width = int(shape[0]), int(shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels


class ImageBuffer:
    """One reusable outgoing Image whose `data` a numpy array writes into: no copy on the Python side.

    rclpy cannot publish without copying (publish converts the message to its C struct, one memcpy through
    the buffer protocol, then serialises), but the copy into a new `array.array` per frame, and the fresh
    pages it touches, are avoidable: the message keeps one `array.array` and `pixels()` is a numpy view of
    it that the colouriser, the blender and the label resize write into (`out=`). Publishing is synchronous,
    so the buffer is free again when `publish` returns; one owner thread (the node's worker) uses it.
    """

    def __init__(self, make_message: Callable[[], Any], encoding: str) -> None:
        self._make = make_message
        self._encoding = encoding
        self._msg: Any = None
        self._pixels: np.ndarray | None = None

    def pixels(self, shape: tuple[int, ...]) -> np.ndarray:
        """The writable HxW(x3) view for this frame; reallocated only when the size changes."""
        if self._pixels is None or self._pixels.shape != tuple(shape):
            msg = self._make()
            _fill_fields(msg, tuple(shape), np.dtype(np.uint8), self._encoding)
            msg.data = array.array("B", bytes(int(np.prod(shape))))
            # the array the message holds (its setter may copy): the view must alias what gets published
            self._pixels = np.frombuffer(msg.data, dtype=np.uint8).reshape(shape)
            self._msg = msg
        return self._pixels

    def message(self, header: Any) -> Any:
        """The message holding the current pixels, stamped with `header`; publish it before the next frame."""
        if self._msg is None:
            raise SlimsegError("ImageBuffer.message() before pixels()", "write the pixels first")
        self._msg.header = header
        return self._msg
