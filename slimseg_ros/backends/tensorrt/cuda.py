"""CUDA and TensorRT status checks and the pinned host / device buffer pair the TensorRT backend owns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from slimseg_ros.errors import SlimsegError


def cuda_call(cuda: Any, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one pycuda call; a driver error becomes SlimsegError with its name (e.g. LogicError)."""
    try:
        return fn(*args)
    except cuda.Error as exc:
        raise SlimsegError(f"CUDA {what} failed: {type(exc).__name__}: {exc}",
                           "check the GPU and driver") from exc


def trt_ok(result: Any, what: str, logger: Any) -> Any:
    """TensorRT reports failure as None/False: raise with TensorRT's last logged error instead."""
    if result is None or result is False:
        raise SlimsegError(f"TensorRT {what} failed: {getattr(logger, 'last_error', '') or 'no message'}",
                           "rebuild the engine with `slimseg build-engines` on this machine")
    return result


class Buffer:
    """A page-locked host array and its device twin, both allocated once."""

    def __init__(self, cuda: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.host = cuda_call(cuda, "pagelocked_empty", cuda.pagelocked_empty, shape, dtype)
        self.device = cuda_call(cuda, "mem_alloc", cuda.mem_alloc, max(1, self.host.nbytes))

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
            self.device = None
        if self.host is not None and hasattr(self.host.base, "free"):
            self.host.base.free()
        self.host = None


def gpu_index(device: str | int | None) -> int:
    """CUDA device index from None, 3, "3", "cuda" or "cuda:3"."""
    text = str(device if device is not None else "").strip().lower()
    text = text.removeprefix("cuda").lstrip(":") if text.startswith("cuda") else text
    if not text:
        return 0
    if not text.isdigit():
        raise SlimsegError(f"tensorrt device {device!r} is not a GPU index", "use e.g. 0, 'cuda' or 'cuda:1'")
    return int(text)
