"""Test helper: camera frames in every accepted encoding, and OpenCV's own decoding of them.

The codec tests and the node's round-trip tests share it. The conversions are written out here with
OpenCV's descriptive names (COLOR_BayerRGGB2RGB, COLOR_YUV2RGB_YUYV, ...), independently of
slimseg_ros.image_codec's table, so a wrong row in that table fails a test instead of being copied into it.
"""

from __future__ import annotations

import cv2
import numpy as np


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer mosaic a sensor with a 2x2 `pattern` (e.g. "RGGB", row by row) records of an RGB scene."""
    channel = {"R": 0, "G": 1, "B": 2}
    out = np.empty(rgb.shape[:2], np.uint8)
    for index, colour in enumerate(pattern):
        dy, dx = divmod(index, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[colour]]
    return out


def yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """Packed 4:2:2 YUV (BT.601, video range, as V4L2 cameras send it), each pixel pair sharing U and V.

    `order` "UYVY" or "YUYV": the byte order of a pair. Written out in numpy (OpenCV < 4.8 has no
    RGB -> packed YUV conversion), so it also checks the decoder against the standard, not only itself.
    """
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    u = np.repeat((u[:, 0::2] + u[:, 1::2]) / 2, 2, axis=1)
    v = np.repeat((v[:, 0::2] + v[:, 1::2]) / 2, 2, axis=1)
    chroma = np.where(np.arange(rgb.shape[1]) % 2 == 0, u, v)  # U on even pixels, V on odd
    pair = (chroma, y) if order == "UYVY" else (y, chroma)
    return np.clip(np.rint(np.dstack(pair)), 0, 255).astype(np.uint8)


def _mono16(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16)
    return grey * 257 + (grey % 7) * 13  # not only exact multiples of 257, so the rounding is exercised


def _from_mono16(samples: np.ndarray) -> np.ndarray:
    grey = np.rint(samples.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)  # cv_bridge's convertTo
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def _cv(code: int):
    return lambda image: cv2.cvtColor(image, code)


def _bayer(pattern: str, classic: int):
    """Demosaic by the sensor's pattern name (OpenCV >= 4.6 alias); older OpenCV has only the classic one."""
    return _cv(getattr(cv2, f"COLOR_Bayer{pattern}2RGB", classic))


# encoding -> (RGB scene -> samples as the camera sends them, samples -> RGB as OpenCV decodes them)
REFERENCE = {
    "rgb8": (lambda rgb: rgb, lambda samples: samples),
    "bgr8": (_cv(cv2.COLOR_RGB2BGR), _cv(cv2.COLOR_BGR2RGB)),
    "rgba8": (_cv(cv2.COLOR_RGB2RGBA), _cv(cv2.COLOR_RGBA2RGB)),
    "bgra8": (_cv(cv2.COLOR_RGB2BGRA), _cv(cv2.COLOR_BGRA2RGB)),
    "mono8": (_cv(cv2.COLOR_RGB2GRAY), _cv(cv2.COLOR_GRAY2RGB)),
    "mono16": (_mono16, _from_mono16),
    "uyvy": (lambda rgb: yuv422(rgb, "UYVY"), _cv(cv2.COLOR_YUV2RGB_UYVY)),
    "yuv422": (lambda rgb: yuv422(rgb, "UYVY"), _cv(cv2.COLOR_YUV2RGB_UYVY)),
    "yuyv": (lambda rgb: yuv422(rgb, "YUYV"), _cv(cv2.COLOR_YUV2RGB_YUYV)),
    "yuv422_yuy2": (lambda rgb: yuv422(rgb, "YUYV"), _cv(cv2.COLOR_YUV2RGB_YUYV)),
    "bayer_rggb8": (lambda rgb: mosaic(rgb, "RGGB"), _bayer("RGGB", cv2.COLOR_BayerBG2RGB)),
    "bayer_bggr8": (lambda rgb: mosaic(rgb, "BGGR"), _bayer("BGGR", cv2.COLOR_BayerRG2RGB)),
    "bayer_gbrg8": (lambda rgb: mosaic(rgb, "GBRG"), _bayer("GBRG", cv2.COLOR_BayerGR2RGB)),
    "bayer_grbg8": (lambda rgb: mosaic(rgb, "GRBG"), _bayer("GRBG", cv2.COLOR_BayerGB2RGB)),
    "8UC3": (_cv(cv2.COLOR_RGB2BGR), _cv(cv2.COLOR_BGR2RGB)),
}


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The samples a camera publishing `encoding` sends for this RGB scene."""
    return np.ascontiguousarray(REFERENCE[encoding][0](rgb))


def reference_rgb(samples: np.ndarray, encoding: str) -> np.ndarray:
    """OpenCV's decoding of those samples: what the node must see."""
    return REFERENCE[encoding][1](samples)


def fill_raw(msg, samples: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False):
    """Fill a sensor_msgs/Image (or any object with its fields) with samples, `pad` bytes of row padding."""
    height, width = samples.shape[:2]
    order = ">" if big_endian else "<"
    data = samples.astype(samples.dtype.newbyteorder(order)) if samples.itemsize > 1 else samples
    rows = np.ascontiguousarray(data).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 77, dtype=np.uint8)], axis=1)
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.step = rows.shape[1] + pad
    msg.is_bigendian = int(big_endian)  # ignored by 8-bit encodings
    msg.data = padded.tobytes()
    return msg
