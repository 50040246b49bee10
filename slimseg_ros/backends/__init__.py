"""Inference backends behind one interface; `create_backend` picks one by name or by what is available.

Backend modules import their runtime (onnxruntime, torch, tensorrt) lazily, so importing this package never
pulls in torch and a robot without a GPU stack can still run the ONNX Runtime CPU backend.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from slimseg_ros.backends.base import Backend, WidthUnavailable
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest

__all__ = ["Backend", "WidthUnavailable", "create_backend", "auto_candidates", "BACKEND_NAMES"]

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "tensorrt", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda",
                 "onnxruntime-tensorrt", "torch", "torch-cpu", "torch-cuda")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_torch() -> bool:
    if not _has("torch"):
        return False
    import torch  # only reached when auto-selection has to consider torch-cuda

    return bool(torch.cuda.is_available())


def auto_candidates() -> list[str]:
    """Backends `auto` would try here, best first: tensorrt, onnxruntime-cuda, torch-cuda, onnxruntime-cpu."""
    from slimseg_ros.backends.onnxruntime_backend import available_providers

    providers = available_providers()
    found = []
    if _has("tensorrt") and _has("pycuda"):
        found.append("tensorrt")
    if "CUDAExecutionProvider" in providers:
        found.append("onnxruntime-cuda")
    if _cuda_torch():
        found.append("torch-cuda")
    if "CPUExecutionProvider" in providers:
        found.append("onnxruntime-cpu")
    return found


def _gpu_index(device: str | int | None) -> int:
    """CUDA device index from None, 3, "3", "cuda" or "cuda:3"."""
    text = str(device if device is not None else "").strip().lower()
    text = text.removeprefix("cuda").lstrip(":") if text.startswith("cuda") else text
    if not text:
        return 0
    if not text.isdigit():
        raise SlimsegError(f"tensorrt device {device!r} is not a GPU index", "use e.g. 0, 'cuda' or 'cuda:1'")
    return int(text)


def _build(name: str, manifest: Manifest, device: str | None, options: dict[str, Any]) -> Backend:
    if name == "tensorrt":
        from slimseg_ros.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(manifest, device=_gpu_index(device), **options)
    if name.startswith("onnxruntime"):
        from slimseg_ros.backends.onnxruntime_backend import OnnxRuntimeBackend

        dev = name.partition("-")[2] or device or "cpu"
        return OnnxRuntimeBackend(manifest, device=dev, **options)
    if name.startswith("torch"):
        from slimseg_ros.backends.torch_backend import TorchBackend

        dev = name.partition("-")[2] or device or "cpu"
        return TorchBackend(manifest, device=dev, **options)
    raise SlimsegError(f"unknown backend {name!r}", f"use one of {', '.join(BACKEND_NAMES)}")


def create_backend(name: str, manifest_path: str | Path | Manifest, device: str | None = None,
                   **options: Any) -> Backend:
    """A ready backend with every usable width loaded; `auto` falls back down the list if one fails to start.

    `options` go to the backend's constructor (e.g. threads=2 for onnxruntime, fp16/cuda_graphs for torch);
    with `auto`, only to an onnxruntime candidate (threads, spin).
    """
    manifest = manifest_path if isinstance(manifest_path, Manifest) else Manifest.load(manifest_path)
    if name != "auto":
        return _build(name, manifest, device, options)
    failures = []
    for candidate in auto_candidates():
        try:
            # the options callers pass to auto (threads, spin) are onnxruntime's: only its candidates get them
            ort = candidate.startswith("onnxruntime")
            backend = _build(candidate, manifest, None, options if ort else {})
        except SlimsegError as exc:
            log.warning("backend %s unavailable: %s", candidate, exc)
            failures.append(f"{candidate}: {exc}")
            continue
        return backend
    raise SlimsegError("no backend could start: " + ("; ".join(failures) or "none installed"),
                       "install onnxruntime (CPU) at least, and check the manifest's files")
