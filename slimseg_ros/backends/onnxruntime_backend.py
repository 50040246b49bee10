"""ONNX Runtime backend: one InferenceSession per width, created at start, CPU or CUDA/TensorRT EPs.

The exported graphs take the camera's uint8 NHWC image and return uint8 labels, so the host moves one byte
per pixel each way. ONNX Runtime is imported lazily so importing the backends package stays cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slimseg_ros.backends.base import Backend
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest

SPIN_KEY = "session.intra_op.allow_spinning"  # onnxruntime's session config key
# device -> (backend name, execution providers in priority order)
DEVICES: dict[str, tuple[str, list[str]]] = {
    "cpu": ("onnxruntime-cpu", ["CPUExecutionProvider"]),
    "cuda": ("onnxruntime-cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    "tensorrt": ("onnxruntime-tensorrt",
                 ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
}


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers ([] if onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRuntimeBackend(Backend):
    """All widths' sessions live for the backend's lifetime; switching width only picks another session."""

    def __init__(
        self, manifest: Manifest, device: str = "cpu", threads: int = 0, spin: bool | None = None
    ) -> None:
        """`threads`: intra-op threads (0: onnxruntime's default, one per core). `spin`: whether idle
        intra-op threads busy-wait for work (None: onnxruntime's default, on). Spinning buys a little
        latency on an idle machine and costs CPU that other processes sharing the cores need
        (docs/bench.md)."""
        super().__init__(manifest)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise SlimsegError("onnxruntime is not installed",
                               "pip install onnxruntime (or onnxruntime-gpu)") from exc
        if device not in DEVICES:
            raise SlimsegError(f"unknown onnxruntime device {device!r}", f"use one of {', '.join(DEVICES)}")
        self.name, wanted = DEVICES[device]
        have = set(ort.get_available_providers())
        if wanted[0] not in have:
            raise SlimsegError(f"{self.name}: {wanted[0]} is not available in this onnxruntime build",
                               f"available: {', '.join(sorted(have))}; use device 'cpu' "
                               "or install onnxruntime-gpu")
        self._providers = [p for p in wanted if p in have]
        self._options = ort.SessionOptions()
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            self._options.intra_op_num_threads = threads
            self._options.inter_op_num_threads = 1
        if spin is not None:
            self._options.add_session_config_entry(SPIN_KEY, "1" if spin else "0")
        self.threads, self.spin = threads, spin
        self._ort = ort
        self._sessions: dict[float, Any] = {}
        self._input_name: dict[float, str] = {}
        self._load_widths(self._load_one)

    def _load_one(self, width: float) -> None:
        path = self.manifest.verify(width, "onnx")
        try:
            session = self._ort.InferenceSession(str(path), sess_options=self._options,
                                                 providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise SlimsegError(f"{path}: onnxruntime could not load it: {exc}",
                               "re-export this width") from exc
        inputs = session.get_inputs()
        h, w = self.input_size
        if len(inputs) != 1 or list(inputs[0].shape) != [1, h, w, 3] or inputs[0].type != "tensor(uint8)":
            got = [(i.name, i.shape, i.type) for i in inputs]
            raise SlimsegError(f"{path}: expected one uint8 input [1,{h},{w},3], got {got}",
                               "the ONNX file does not match the manifest's input size; re-export")
        if "labels" not in [o.name for o in session.get_outputs()]:
            raise SlimsegError(f"{path}: graph has no 'labels' output", "re-export with `slimseg export`")
        self._sessions[width] = session
        self._input_name[width] = inputs[0].name

    def _run(self, image: np.ndarray, width: float) -> np.ndarray:
        (labels,) = self._sessions[width].run(["labels"], {self._input_name[width]: image[None]})
        return labels[0]

    def run_outputs(self, image: np.ndarray, width: float) -> dict[str, np.ndarray]:
        """Every graph output (labels and, when exported with --keep-logits, logits) for checks and tests."""
        key = self._key(width)
        session = self._sessions[key]
        names = [o.name for o in session.get_outputs()]
        outs = session.run(names, {self._input_name[key]: image[None]})
        return dict(zip(names, outs, strict=True))

    def close(self) -> None:
        self._sessions.clear()
        super().close()
