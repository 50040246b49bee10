"""TensorRT 10 backend: one engine and execution context per width, everything allocated at start.

One owner (TensorRTBackend) holds the CUDA context, one stream, page-locked host buffers and device buffers
(shared by all widths: they have the same I/O shapes, and one frame runs at a time) and each width's engine
and context, and frees them in close(). Tensor addresses are bound once at start, so a frame is: copy the
image into the pinned buffer, async H2D, execute_async_v3, async D2H of a byte per pixel, synchronise; a
width switch only picks another context and allocates nothing. Every CUDA/TensorRT status goes through
`_cuda` / `_trt_ok`, which raise SlimsegError naming the call and the error. Plans are checked against this
TensorRT version and GPU (trt_compat) before deserialising; a stale or missing plan is rebuilt from the
width's ONNX (engines/tensorrt_build.py) or the width is disabled with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from slimseg_ros.backends.base import Backend
from slimseg_ros.backends.trt_compat import USE, decide_plan
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest

PRECISION_ORDER = ("int8", "fp16", "fp32")  # preferred first when the manifest records several


def _cuda(cuda: Any, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one pycuda call; a driver error becomes SlimsegError with its name (e.g. LogicError)."""
    try:
        return fn(*args)
    except cuda.Error as exc:
        raise SlimsegError(f"CUDA {what} failed: {type(exc).__name__}: {exc}",
                           "check the GPU and driver") from exc


def _trt_ok(result: Any, what: str, logger: Any) -> Any:
    """TensorRT reports failure as None/False: raise with TensorRT's last logged error instead."""
    if result is None or result is False:
        raise SlimsegError(f"TensorRT {what} failed: {getattr(logger, 'last_error', '') or 'no message'}",
                           "rebuild the engine with `slimseg build-engines` on this machine")
    return result


class _Buffer:
    """A page-locked host array and its device twin, both allocated once."""

    def __init__(self, cuda: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.host = _cuda(cuda, "pagelocked_empty", cuda.pagelocked_empty, shape, dtype)
        self.device = _cuda(cuda, "mem_alloc", cuda.mem_alloc, max(1, self.host.nbytes))

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
            self.device = None
        if self.host is not None and hasattr(self.host.base, "free"):
            self.host.base.free()
        self.host = None


class TensorRTBackend(Backend):
    """All widths' engines and contexts live until close(); see the module docstring for the frame path."""

    name = "tensorrt"

    def __init__(self, manifest: Manifest, device: int = 0, precision: str | None = None,
                 rebuild: bool = True, workspace_mb: int = 1024) -> None:
        super().__init__(manifest)
        from slimseg_ros.engines.tensorrt_build import import_tensorrt, make_logger, trt_target

        self._trt, self._cuda_mod = import_tensorrt()
        cuda = self._cuda_mod
        self._device = _cuda(cuda, "Device", cuda.Device, device)
        self._ctx = _cuda(cuda, "retain_primary_context", self._device.retain_primary_context)
        self._ctx.push()
        self._engines: dict[float, Any] = {}
        self._contexts: dict[float, Any] = {}
        self._buffers: dict[tuple[str, tuple[int, ...], str], _Buffer] = {}
        self._io: dict[float, tuple[_Buffer, _Buffer]] = {}
        self._stream = None
        self._starting = True  # close() during start-up (no usable width) leaves the detach to __init__
        try:
            self._logger = make_logger(self._trt)
            self._runtime = _trt_ok(self._trt.Runtime(self._logger), "Runtime()", self._logger)
            self.target = trt_target(self._trt, self._device)
            self._stream = _cuda(cuda, "Stream", cuda.Stream)
            self._precision, self._rebuild, self._workspace_mb = precision, rebuild, workspace_mb
            self._load_widths(self._load_one)
        except BaseException:
            self._release()
            self._closed = True
            raise
        finally:
            self._starting = False
            self._ctx.pop()
            if self._closed:
                self._ctx.detach()

    # --- start-up ---------------------------------------------------------------------------------------
    def _choose_precision(self, entry: dict[str, Any]) -> str:
        if self._precision:
            return self._precision
        recorded = {e.get("precision") for e in entry.get("engines", [])
                    if e.get("trt_version") == self.target.trt_version and e.get("gpu") == self.target.gpu}
        recorded = recorded or {e.get("precision") for e in entry.get("engines", [])}
        return next((p for p in PRECISION_ORDER if p in recorded), "fp16")

    def _plan_for(self, width: float) -> Any:
        from slimseg_ros.engines.tensorrt_build import build_width, plan_intact

        entry = self.manifest.entry(width)
        precision = self._choose_precision(entry)
        onnx_path = self.manifest.onnx_path(width)
        has_onnx = onnx_path is not None and onnx_path.is_file()
        decision = decide_plan(entry.get("engines", []), self.target, precision, has_onnx,
                               plan_ok=lambda plan: plan_intact(self.manifest, plan), width=width)
        if decision.action != USE:
            if not self._rebuild:
                raise SlimsegError(decision.reason, "run `slimseg build-engines` on this machine")
            build_width(self.manifest, width, precision, self._trt, self._cuda_mod, self._device,
                        self._logger, self._workspace_mb)
            if self.manifest.path is not None:
                self.manifest.save()
            decision = decide_plan(entry.get("engines", []), self.target, precision, has_onnx,
                                   plan_ok=lambda plan: plan_intact(self.manifest, plan), width=width)
        return self.manifest.resolve(decision.plan["file"])

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
        key = (name, shape, np.dtype(dtype).str)
        if key not in self._buffers:
            self._buffers[key] = _Buffer(self._cuda_mod, shape, dtype)
        return self._buffers[key]

    def _load_one(self, width: float) -> None:
        trt, logger = self._trt, self._logger
        plan = self._plan_for(width)
        engine = _trt_ok(self._runtime.deserialize_cuda_engine(plan.read_bytes()), f"deserialize {plan.name}",
                         logger)
        context = _trt_ok(engine.create_execution_context(), f"create_execution_context ({plan.name})",
                          logger)
        h, w = self.input_size
        inputs, outputs = {}, {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            buf = self._buffer(name, shape, dtype)
            _trt_ok(context.set_tensor_address(name, int(buf.device)), f"set_tensor_address({name})", logger)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs)[name] = (shape, dtype, buf)
        image, labels = inputs.get("image"), outputs.get("labels")
        if image is None or image[:2] != ((1, h, w, 3), np.dtype(np.uint8)) or len(inputs) != 1:
            got = {k: (v[0], str(v[1])) for k, v in inputs.items()}
            raise SlimsegError(f"{plan.name}: expected one uint8 input 'image' (1, {h}, {w}, 3), got {got}",
                               "the plan does not match the manifest; rebuild it")
        if labels is None or labels[:2] != ((1, h, w), np.dtype(np.uint8)):
            raise SlimsegError(f"{plan.name}: expected a uint8 'labels' output (1, {h}, {w})",
                               "re-export and rebuild")
        self._engines[width], self._contexts[width] = engine, context
        self._io[width] = (image[2], labels[2])

    # --- per frame ----------------------------------------------------------------------------------------
    def _run(self, image: np.ndarray, width: float) -> np.ndarray:
        cuda, stream = self._cuda_mod, self._stream
        image_buf, labels_buf = self._io[width]
        self._ctx.push()  # the caller's thread may differ from the one that created the backend
        try:
            np.copyto(image_buf.host[0], image)
            _cuda(cuda, "memcpy_htod_async", cuda.memcpy_htod_async, image_buf.device, image_buf.host, stream)
            _trt_ok(self._contexts[width].execute_async_v3(stream.handle), "execute_async_v3", self._logger)
            _cuda(cuda, "memcpy_dtoh_async", cuda.memcpy_dtoh_async, labels_buf.host, labels_buf.device,
                  stream)
            _cuda(cuda, "stream synchronize", stream.synchronize)
        finally:
            self._ctx.pop()
        return labels_buf.host[0].copy()  # the pinned buffer is reused by the next frame

    def _release(self) -> None:
        self._contexts.clear()  # contexts before their engines, engines before the runtime
        self._engines.clear()
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()
        self._io.clear()
        self._stream = None

    def close(self) -> None:
        if self._closed:
            return
        if self._starting:  # called by the base class while __init__ still holds the CUDA context
            self._release()
            super().close()
            return
        self._ctx.push()
        try:
            self._release()
        finally:
            self._ctx.pop()
            self._ctx.detach()
        super().close()
