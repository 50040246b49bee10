"""Palette, colourised label map and overlay: what rviz and the demo show of a segmentation.

Numpy/OpenCV only (no ROS, no torch) so the node and the demo share one implementation. A palette is a
256-entry lookup table, so colourising is one `cv2.LUT` (no per-class loop; 10x faster than numpy's
fancy index `palette[labels]`, with the same pixels) and any class id, even one the manifest does not name,
maps to a colour instead of failing. The node colourises at the network size and upsamples the colours
once (`resize.labels_to_frame`), and blends into reused buffers (`out=`): nearest upsampling picks the
same source pixel for every channel, so this equals colourising the upsampled labels, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from slimseg_ros.errors import SlimsegError

VOID_COLOR = (0, 0, 0)
# Resolution of the node's ~/color and ~/overlay (parameter visualization_size); the first is the default.
# network: the network's input size (the image it saw, the labels it gave), a cost that does not grow with
# the camera; input: the frame's size, pixel-aligned with the camera image.
VISUALIZATION_SIZES: tuple[str, ...] = ("network", "input")


def make_palette(
    colors: Sequence[Sequence[int]] | Sequence[Mapping],
    void_color: Sequence[int] = VOID_COLOR,
) -> np.ndarray:
    """Build a 256x3 uint8 RGB lookup table so any uint8 class id has a colour (unnamed ids get void).

    `colors` is either a list of RGB triples indexed by class id, or the manifest's class entries
    (`{"id": 0, "name": ..., "color": [r, g, b]}`), which may be sparse or unordered.
    """
    lut = np.empty((256, 3), dtype=np.uint8)
    lut[:] = _rgb(void_color, "void_color")
    for index, item in enumerate(colors):
        if isinstance(item, Mapping):
            if "id" not in item or "color" not in item:
                raise SlimsegError(
                    f"class entry {dict(item)} lacks 'id' or 'color'",
                    "each class needs {id: int, name: str, color: [r, g, b]}",
                )
            class_id, color = int(item["id"]), item["color"]
        else:
            class_id, color = index, item
        if not 0 <= class_id <= 255:
            raise SlimsegError(f"class id {class_id} is outside 0..255", "label maps are uint8")
        lut[class_id] = _rgb(color, f"colour of class {class_id}")
    return lut


def colorize(labels: np.ndarray, palette: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Turn an HxW uint8 class-id map into an HxWx3 RGB image (one table lookup, no Python loop).

    `out`: an HxWx3 uint8 buffer to write into; it is also used for the grey-to-3-channel step.
    """
    _check_labels(labels)
    if palette.shape != (256, 3) or palette.dtype != np.uint8:
        raise SlimsegError(
            f"palette has shape {palette.shape} and dtype {palette.dtype}", "build it with make_palette()"
        )
    if out is None:
        out = np.empty((*labels.shape, 3), dtype=np.uint8)
    elif out.shape != (*labels.shape, 3) or out.dtype != np.uint8:
        raise SlimsegError(f"out buffer is {out.shape} {out.dtype}", f"expected uint8 {(*labels.shape, 3)}")
    _into(cv2.cvtColor(labels, cv2.COLOR_GRAY2RGB, dst=out), out)  # 3 equal channels: LUT maps each
    _into(cv2.LUT(out, palette.reshape(256, 1, 3), dst=out), out)
    return out


def overlay(
    image: np.ndarray, color_mask: np.ndarray, alpha: float = 0.5, out: np.ndarray | None = None
) -> np.ndarray:
    """Blend a colour mask over the camera image (alpha = mask weight) so classes read against the scene.

    `out`: a buffer of the image's shape to blend into (the node reuses one per output).
    """
    if not 0.0 <= alpha <= 1.0:
        raise SlimsegError(
            f"overlay alpha {alpha} is outside [0, 1]", "0 shows only the image, 1 only the mask"
        )
    for name, array in (("image", image), ("colour mask", color_mask)):
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise SlimsegError(
                f"{name} must be HxWx3 uint8, got shape {array.shape} dtype {array.dtype}",
                "pass RGB images",
            )
    if image.shape != color_mask.shape:
        raise SlimsegError(
            f"image {image.shape[:2]} and mask {color_mask.shape[:2]} differ in size",
            "colourise the labels at the image's resolution",
        )
    if out is None:
        return cv2.addWeighted(color_mask, float(alpha), image, 1.0 - float(alpha), 0.0)
    if out.shape != image.shape or out.dtype != np.uint8:
        raise SlimsegError(f"out buffer is {out.shape} {out.dtype}", f"expected uint8 {image.shape}")
    return _into(cv2.addWeighted(color_mask, float(alpha), image, 1.0 - float(alpha), 0.0, dst=out), out)


def overlay_labels(
    image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Colourise and blend in one call: the common case for the demo's pictures."""
    return overlay(image, colorize(labels, palette), alpha)


def _into(result: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out` holding `result`: OpenCV writes into a fitting dst, but copy if it ever allocated instead."""
    if result is not out:
        out[...] = result
    return out


def _check_labels(labels: np.ndarray) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2:
        shape = getattr(labels, "shape", None)
        dtype = getattr(labels, "dtype", type(labels).__name__)
        raise SlimsegError(
            f"labels must be an HxW uint8 array, got shape {shape} dtype {dtype}",
            "backends return uint8 class ids",
        )


def _rgb(color: Sequence[int], what: str) -> tuple[int, int, int]:
    values = list(color)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise SlimsegError(f"{what} is {values!r}", "colours are [r, g, b] integers in 0..255")
    return int(values[0]), int(values[1]), int(values[2])
