"""Inference backends behind one interface; `create_backend` picks one by name or by what is available.

Names, modules and devices are in registry.py. A backend's module (and its runtime: onnxruntime, tensorrt,
torch) is imported only when that backend is created, so importing this package never pulls in torch and a
robot without a GPU stack can still run the ONNX Runtime CPU backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

from slimseg_ros.backends.base import Backend, WidthUnavailable
from slimseg_ros.backends.registry import AUTO, BACKEND_NAMES, KINDS, NODE_BACKENDS
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest

__all__ = ["Backend", "WidthUnavailable", "create_backend", "auto_candidates", "BACKEND_NAMES",
           "NODE_BACKENDS"]

log = logging.getLogger(__name__)


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _backend_class(name: str) -> type[Backend]:
    kind = KINDS[name]
    return getattr(importlib.import_module(kind.module), kind.cls)


def auto_candidates() -> list[str]:
    """Backends `auto` would try here, best first: tensorrt, onnxruntime-cuda, torch-cuda, onnxruntime-cpu."""
    from slimseg_ros.backends.onnxruntime_backend import available_providers

    providers = available_providers()
    found = []
    if _has(*KINDS["tensorrt"].needs):
        found.append("tensorrt")
    if "CUDAExecutionProvider" in providers:
        found.append("onnxruntime-cuda")
    if _has(*KINDS["torch-cuda"].needs) and _backend_class("torch-cuda").cuda_available():
        found.append("torch-cuda")
    if "CPUExecutionProvider" in providers:
        found.append("onnxruntime-cpu")
    return found


def _build(name: str, manifest: Manifest, device: str | None, options: dict[str, Any]) -> Backend:
    kind = KINDS.get(name)
    if kind is None:
        raise SlimsegError(f"unknown backend {name!r}", f"use one of {', '.join(BACKEND_NAMES)}")
    dev = kind.device or device
    return _backend_class(name)(manifest, **({"device": dev} if dev else {}), **options)


def create_backend(name: str, manifest_path: str | Path | Manifest, device: str | None = None,
                   **options: Any) -> Backend:
    """A ready backend with every usable width loaded; `auto` falls back down the list if one fails to start.

    `options` go to the backend's constructor (e.g. threads=2 for onnxruntime, fp16/cuda_graphs for torch);
    with `auto`, only to an onnxruntime candidate (threads, spin).
    """
    manifest = manifest_path if isinstance(manifest_path, Manifest) else Manifest.load(manifest_path)
    if name != AUTO:
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
