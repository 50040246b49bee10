"""Every backend name, defined once: the node's `backend` parameter, `slimseg bench` and `auto` use it.

A backend is found by its module and class name and imported only when created, so naming the torch backend
(which lives with the offline tools in engines/, because it rebuilds export's graph from a checkpoint) costs
the runtime nothing and keeps it free of torch and training code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendKind:
    """One selectable backend: where its class lives, the device it pins, and what it needs installed."""

    name: str
    module: str
    cls: str
    device: str | None = None  # e.g. "cpu" for onnxruntime-cpu; None: the caller's device (or the default)
    node: bool = False  # offered as the node's `backend` parameter (the family names)
    needs: tuple[str, ...] = ()


_ORT = "slimseg_ros.backends.onnxruntime_backend"
_TORCH = "slimseg_ros.engines.torch_backend"
_TRT = "slimseg_ros.backends.tensorrt.backend"

KINDS: dict[str, BackendKind] = {k.name: k for k in (
    BackendKind("tensorrt", _TRT, "TensorRTBackend", node=True, needs=("tensorrt", "pycuda")),
    BackendKind("onnxruntime", _ORT, "OnnxRuntimeBackend", node=True, needs=("onnxruntime",)),
    BackendKind("onnxruntime-cpu", _ORT, "OnnxRuntimeBackend", "cpu", needs=("onnxruntime",)),
    BackendKind("onnxruntime-cuda", _ORT, "OnnxRuntimeBackend", "cuda", needs=("onnxruntime",)),
    BackendKind("onnxruntime-tensorrt", _ORT, "OnnxRuntimeBackend", "tensorrt", needs=("onnxruntime",)),
    BackendKind("torch", _TORCH, "TorchBackend", node=True, needs=("torch",)),
    BackendKind("torch-cpu", _TORCH, "TorchBackend", "cpu", needs=("torch",)),
    BackendKind("torch-cuda", _TORCH, "TorchBackend", "cuda", needs=("torch",)),
)}

AUTO = "auto"
BACKEND_NAMES: tuple[str, ...] = (AUTO, *KINDS)  # what `slimseg bench --backend` accepts
NODE_BACKENDS: tuple[str, ...] = (AUTO, *(k.name for k in KINDS.values() if k.node))  # the node's choices
