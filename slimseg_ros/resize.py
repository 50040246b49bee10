"""Fitting a camera frame to the network's input size, and mapping labels and intrinsics back.

Cameras rarely share the network's aspect ratio, so the node offers three ways to fit a frame:

- `stretch`: scale each axis to the network size. Every frame pixel is segmented; shapes are distorted
  when the aspects differ. The node's original behaviour and the default.
- `letterbox`: scale uniformly to fit inside the network size and pad the rest. Aspect kept and every
  frame pixel segmented; the padding costs network pixels.
- `crop`: scale uniformly to cover the network size and cut the centre. Aspect kept at the network's full
  resolution; the frame's margins outside the crop are not segmented (their labels are the void id).

Numpy and OpenCV only (no ROS), so the geometry is unit-testable on its own. Coordinates follow ROS's
image_geometry convention (as image_proc's resize and crop do): a network pixel coordinate is
`u_net = sx * u_frame + ox`, no half-pixel shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox", "crop")

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


@dataclass(frozen=True)
class Fit:
    """How one frame size maps onto the network input for one mode (computed once per frame size)."""

    mode: str
    frame: tuple[int, int]  # (height, width) of the camera frame
    network: tuple[int, int]  # (height, width) of the network input
    scale: tuple[float, float]  # (sx, sy): network pixels per frame pixel
    offset: tuple[float, float]  # (ox, oy): where the frame's origin lands in network pixels
    content: Box  # network pixels that hold frame content (letterbox: all but the padding)
    visible: Box  # frame pixels the network sees (crop: the centre crop)

    @property
    def affine(self) -> np.ndarray:
        """3x3 map from frame pixel coordinates to network pixel coordinates (applied to K and P)."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        return np.array([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]])


def _size(value: tuple[int, int], what: str) -> tuple[int, int]:
    height, width = (int(v) for v in value)
    if height < 1 or width < 1:
        raise ValueError(f"{what} size must be positive, got {height}x{width} (HxW)")
    return height, width


def fit(frame: tuple[int, int], network: tuple[int, int], mode: str) -> Fit:
    """The geometry of fitting a (height, width) frame to a (height, width) network input."""
    fh, fw = _size(frame, "frame")
    nh, nw = _size(network, "network")
    if mode == "stretch":
        return Fit(mode, (fh, fw), (nh, nw), (nw / fw, nh / fh), (0.0, 0.0), (0, 0, nw, nh), (0, 0, fw, fh))
    if mode == "letterbox":
        s = min(nw / fw, nh / fh)
        cw, ch = min(nw, max(1, round(fw * s))), min(nh, max(1, round(fh * s)))
        x0, y0 = (nw - cw) // 2, (nh - ch) // 2
        # the per-axis scale cv2.resize really applies (the rounded content size over the frame size)
        return Fit(mode, (fh, fw), (nh, nw), (cw / fw, ch / fh), (float(x0), float(y0)),
                   (x0, y0, x0 + cw, y0 + ch), (0, 0, fw, fh))
    if mode == "crop":
        s = max(nw / fw, nh / fh)
        vw, vh = min(fw, max(1, round(nw / s))), min(fh, max(1, round(nh / s)))
        x0, y0 = (fw - vw) // 2, (fh - vh) // 2
        sx, sy = nw / vw, nh / vh
        return Fit(mode, (fh, fw), (nh, nw), (sx, sy), (-x0 * sx, -y0 * sy), (0, 0, nw, nh),
                   (x0, y0, x0 + vw, y0 + vh))
    raise ValueError(f"resize mode '{mode}' is not one of {', '.join(RESIZE_MODES)}")


def to_network(image: np.ndarray, geometry: Fit, pad_value: int | tuple[int, ...] = 0) -> np.ndarray:
    """The frame at the network's input size (bilinear, as the backends resize), contiguous.

    `pad_value` fills letterbox padding; the node passes the model's normalisation mean so the padding
    reaches the network as zeros.
    """
    if image.shape[:2] != geometry.frame:
        raise ValueError(f"image is {image.shape[:2]}, the fit was computed for {geometry.frame}")
    nh, nw = geometry.network
    x0, y0, x1, y1 = geometry.visible
    if (x0, y0, x1, y1) != (0, 0, geometry.frame[1], geometry.frame[0]):
        image = image[y0:y1, x0:x1]
    cx0, cy0, cx1, cy1 = geometry.content
    if image.shape[:2] != (cy1 - cy0, cx1 - cx0):
        image = cv2.resize(image, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
    if (cx0, cy0, cx1, cy1) != (0, 0, nw, nh):
        channels = 1 if image.ndim == 2 else image.shape[2]
        value = (pad_value,) * channels if isinstance(pad_value, int) else tuple(pad_value)
        image = cv2.copyMakeBorder(image, cy0, nh - cy1, cx0, nw - cx1, cv2.BORDER_CONSTANT,
                                   value=[float(v) for v in value])
    return np.ascontiguousarray(image)


def labels_to_frame(
    labels: np.ndarray, geometry: Fit, void: int | tuple[int, ...], out: np.ndarray | None = None
) -> np.ndarray:
    """Network-size labels mapped back onto the frame (nearest: class ids must not blend).

    Letterbox padding is cut off first; frame pixels outside a crop get `void` (not segmented). Also maps
    an HxWx3 image at the network size (the colourised labels, `void` then a colour), so colour is looked
    up at the network size and upsampled once. `out`: a frame-size buffer to write into (the node's
    reused message buffers), instead of a new array.
    """
    _check_labels(labels, geometry)
    fh, fw = geometry.frame
    cx0, cy0, cx1, cy1 = geometry.content
    if (cx0, cy0, cx1, cy1) != (0, 0, geometry.network[1], geometry.network[0]):
        labels = labels[cy0:cy1, cx0:cx1]
    x0, y0, x1, y1 = geometry.visible
    whole = (x0, y0, x1, y1) == (0, 0, fw, fh)
    if out is None:
        out = np.empty((fh, fw, *labels.shape[2:]), dtype=np.uint8)
    elif out.shape != (fh, fw, *labels.shape[2:]) or out.dtype != np.uint8:
        raise ValueError(f"out is {out.shape} {out.dtype}, expected uint8 {(fh, fw, *labels.shape[2:])}")
    if whole and labels.shape[:2] != (fh, fw):
        resized = cv2.resize(labels, (fw, fh), dst=out, interpolation=cv2.INTER_NEAREST)
        if resized is not out:  # OpenCV allocated instead of writing in place: keep the caller's buffer
            out[...] = resized
        return out
    if labels.shape[:2] != (y1 - y0, x1 - x0):
        labels = cv2.resize(labels, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    if not whole:
        out[...] = void
    out[y0:y1, x0:x1] = labels
    return out


def labels_at_network(labels: np.ndarray, geometry: Fit, void: int) -> np.ndarray:
    """Network-size labels as published with labels_at_network_size: letterbox padding set to `void`."""
    _check_labels(labels, geometry)
    nh, nw = geometry.network
    cx0, cy0, cx1, cy1 = geometry.content
    if (cx0, cy0, cx1, cy1) == (0, 0, nw, nh):
        return labels
    out = np.full((nh, nw), void, dtype=np.uint8)
    out[cy0:cy1, cx0:cx1] = labels[cy0:cy1, cx0:cx1]
    return out


def map_intrinsics(k: np.ndarray, p: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K (3x3) and P (3x4) of a camera after its image is mapped by `affine` (A @ K, A @ P).

    Scaling multiplies fx, cx (sx) and fy, cy (sy), and P's Tx, Ty with them; an offset moves cx, cy.
    Distortion and R are unchanged: they live in normalised coordinates.
    """
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.asarray(p, dtype=np.float64).reshape(3, 4)
    return affine @ k, affine @ p


def map_box(box: Box, affine: np.ndarray, bounds: tuple[int, int]) -> Box:
    """A pixel box mapped by a scale-and-offset `affine`, rounded and clipped to (height, width)."""
    x0, y0, x1, y1 = box
    (sx, _, ox), (_, sy, oy) = affine[0], affine[1]
    height, width = bounds

    def clip(value: float, high: int) -> int:
        return min(max(round(float(value)), 0), high)

    return (clip(sx * x0 + ox, width), clip(sy * y0 + oy, height),
            clip(sx * x1 + ox, width), clip(sy * y1 + oy, height))


def _check_labels(labels: np.ndarray, geometry: Fit) -> None:
    if labels.shape[:2] != geometry.network or labels.ndim not in (2, 3) or labels.dtype != np.uint8:
        raise ValueError(
            f"labels are {labels.shape} {labels.dtype}, expected uint8 at the network size {geometry.network}"
        )
