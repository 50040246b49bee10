"""The one inference interface every backend implements: infer(image, width) -> labels.

The base class owns what all backends share, so they cannot drift apart: input validation, resizing a
frame of another size to the network's input size (INTER_LINEAR) and the labels back to the frame's size
(INTER_NEAREST: class ids must not be blended), per-width disabling with a reason, and explicit close.
A concrete backend only implements `_run(image_at_input_size, width) -> labels_at_input_size`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import cv2
import numpy as np

from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest, same_width


class WidthUnavailable(SlimsegError):
    """A width that the manifest lists but that this backend could not load (or that does not exist)."""


def check_image(image: np.ndarray) -> None:
    """Reject anything that is not a uint8 HxWx3 array before it reaches a native runtime."""
    if not isinstance(image, np.ndarray):
        raise SlimsegError(f"image must be a numpy array, got {type(image).__name__}",
                           "pass an HxWx3 uint8 RGB array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise SlimsegError(f"image must be HxWx3 (RGB), got shape {image.shape}",
                           "convert mono/RGBA frames to RGB")
    if image.dtype != np.uint8:
        raise SlimsegError(f"image must be uint8, got {image.dtype}", "scale to 0-255 and cast to uint8")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise SlimsegError(f"image is empty: shape {image.shape}", "check the camera stream")


def to_input_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frame resized (bilinear) to (height, width) and made contiguous; unchanged if already that size."""
    h, w = size
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image)


def to_frame_size(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label map resized (nearest) back to the frame's (height, width)."""
    if labels.shape[:2] != tuple(shape):
        labels = cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return labels


class Backend(ABC):
    """Common state and the infer() template; subclasses load every width at construction."""

    name: str = "backend"

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.input_size: tuple[int, int] = manifest.input_size
        self.widths: list[float] = []
        self.disabled: dict[float, str] = {}
        self._closed = False

    # --- loading helpers ------------------------------------------------------------------------------
    def _load_widths(self, load_one: Callable[[float], None], widths: Iterable[float] | None = None) -> None:
        """Load every width; a failure disables only that width. No usable width at all is an error."""
        for w in widths if widths is not None else self.manifest.widths:
            try:
                load_one(w)
            except Exception as exc:  # noqa: BLE001 - any load failure disables the width, with its reason
                named = isinstance(exc, SlimsegError)
                self.disabled[w] = str(exc) if named else f"{type(exc).__name__}: {exc}"
            else:
                self.widths.append(w)
        self.widths.sort()
        if not self.widths:
            reasons = "; ".join(f"{w:g}: {r}" for w, r in sorted(self.disabled.items()))
            self.close()
            raise SlimsegError(
                f"{self.name}: no usable width in {self.manifest.path or self.manifest.root} ({reasons})",
                "re-run `slimseg export` (and `slimseg build-engines` for TensorRT)",
            )

    def _key(self, width: float) -> float:
        """The loaded width equal to `width` (float tolerance), or WidthUnavailable saying why not."""
        for w in self.widths:
            if same_width(w, width):
                return w
        for w, reason in self.disabled.items():
            if same_width(w, width):
                raise WidthUnavailable(f"{self.name}: width {w:g} is disabled: {reason}",
                                       f"usable widths: {', '.join(f'{u:g}' for u in self.widths)}")
        raise WidthUnavailable(f"{self.name}: width {width} is not in the manifest",
                               f"usable widths: {', '.join(f'{u:g}' for u in self.widths)}")

    # --- the interface --------------------------------------------------------------------------------
    def infer(self, image: np.ndarray, width: float) -> np.ndarray:
        """uint8 HxW class ids at the image's own size for an HxWx3 uint8 RGB image of any size."""
        if self._closed:
            raise SlimsegError(f"{self.name}: backend is closed", "create a new backend")
        key = self._key(width)
        check_image(image)
        labels = self._run(to_input_size(image, self.input_size), key)
        return to_frame_size(labels, image.shape[:2])

    def warm_up(self) -> dict[float, float]:
        """One inference per usable width on a blank frame; seconds per width.

        A width's first run may pay one-off costs (memory arena growth, kernel and algorithm choice, lazy
        GPU allocation); the node calls this at configure so no live frame after a switch pays them.
        """
        blank = np.zeros((*self.input_size, 3), dtype=np.uint8)
        times = {}
        for width in self.widths:
            start = time.perf_counter()
            self.infer(blank, width)
            times[width] = time.perf_counter() - start
        return times

    @abstractmethod
    def _run(self, image: np.ndarray, width: float) -> np.ndarray:
        """Labels (uint8, input_size) for a contiguous uint8 image already at input_size."""

    def close(self) -> None:
        """Release sessions/engines/buffers; idempotent."""
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        off = ", ".join(f"{w:g} ({r})" for w, r in sorted(self.disabled.items()))
        usable = ", ".join(f"{w:g}" for w in self.widths)
        int8 = ", ".join(f"{w:g}" for w in self.widths if self.manifest.precision(w) == "int8")
        return (f"{self.name}: widths [{usable}]" + (f"; int8 graphs: {int8}" if int8 else "")
                + (f"; disabled: {off}" if off else ""))
