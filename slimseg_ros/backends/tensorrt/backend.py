"""TensorRT 10 backend: one engine and execution context per width, everything allocated at start.

One owner (TensorRTBackend) holds the CUDA context, one stream, page-locked host buffers and device buffers
(shared by all widths: they have the same I/O shapes, and one frame runs at a time) and each width's engine
and context, and frees them in close(). Tensor addresses are bound once at start, so a frame is: copy the
image into the pinned buffer, async H2D, execute_async_v3, async D2H of a byte per pixel, synchronise; a
width switch only picks another context and allocates nothing. Every CUDA/TensorRT status goes through
`cuda_call` / `trt_ok` (cuda.py), which raise SlimsegError naming the call and the error. Plans are checked
against this TensorRT version and GPU (compat.py) before deserialising. A stale or missing plan is looked up
in the plan cache, else rebuilt from the width's ONNX into the cache (build.py, cache.py; the manifest is
never written), else the width is disabled with the reason ("run `slimseg build-engines`").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimseg_ros.backends.base import Backend
from slimseg_ros.backends.tensorrt.cache import PlanCache
from slimseg_ros.backends.tensorrt.compat import USE, choose_precision, decide_plan
from slimseg_ros.backends.tensorrt.cuda import Buffer, cuda_call, gpu_index, trt_ok
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest, PlanRecord

BUILD_HINT = "run `slimseg build-engines` on this machine"


class TensorRTBackend(Backend):
    """All widths' engines and contexts live until close(); see the module docstring for the frame path."""

    name = "tensorrt"

    def __init__(self, manifest: Manifest, device: str | int | None = None, precision: str | None = None,
                 rebuild: bool = True, workspace_mb: int = 1024) -> None:
        super().__init__(manifest)
        from slimseg_ros.backends.tensorrt.build import import_tensorrt, make_logger, trt_target

        self._trt, self._cuda_mod = import_tensorrt()
        cuda = self._cuda_mod
        self._device = cuda_call(cuda, "Device", cuda.Device, gpu_index(device))
        self._ctx = cuda_call(cuda, "retain_primary_context", self._device.retain_primary_context)
        self._ctx.push()
        self._engines: dict[float, Any] = {}
        self._contexts: dict[float, Any] = {}
        self._buffers: dict[tuple[str, tuple[int, ...], str], Buffer] = {}
        self._io: dict[float, tuple[Buffer, Buffer]] = {}
        self._stream = None
        self._starting = True  # close() during start-up (no usable width) leaves the detach to __init__
        try:
            self._logger = make_logger(self._trt)
            self._runtime = trt_ok(self._trt.Runtime(self._logger), "Runtime()", self._logger)
            self.target = trt_target(self._trt, self._device)
            self.cache = PlanCache(manifest)
            self._stream = cuda_call(cuda, "Stream", cuda.Stream)
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
    def _plan_for(self, width: float) -> Path:
        """The plan to deserialise: the manifest's, else the cache's, else one built now into the cache."""
        from slimseg_ros.backends.tensorrt.build import build_width, plan_intact, plan_precision

        entry = self.manifest.entry(width)
        cached = self.cache.plans(width)
        known = [*entry.engines, *(p for p, _ in cached)]
        requested = self._precision or choose_precision(known, self.target)
        precision = plan_precision(self.manifest, width, requested)
        onnx_path = self.manifest.onnx_path(width)
        has_onnx = onnx_path is not None and onnx_path.is_file()
        paths = {p: self.manifest.file_path(p.file) for p in entry.engines} | dict(cached)
        decision = decide_plan(known, self.target, precision, has_onnx,
                               plan_ok=lambda plan: plan_intact(paths[plan], plan), width=width)
        if decision.action == USE:
            return paths[decision.plan]
        if not self._rebuild:
            raise SlimsegError(decision.reason, BUILD_HINT)
        target_dir = self.cache.writable_dir()
        if target_dir is None:
            tried = ", ".join(map(str, self.cache.dirs))
            raise SlimsegError(f"{decision.reason}; no writable plan cache ({tried})", BUILD_HINT)
        self.manifest.verify(width, "onnx")
        plan: PlanRecord = build_width(onnx_path, target_dir, width, precision, self._trt, self._cuda_mod,
                                       self._device, self._logger, self._workspace_mb)
        self.cache.record(width, plan)
        return target_dir / plan.file

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Buffer:
        key = (name, shape, np.dtype(dtype).str)
        if key not in self._buffers:
            self._buffers[key] = Buffer(self._cuda_mod, shape, dtype)
        return self._buffers[key]

    def _load_one(self, width: float) -> None:
        trt, logger = self._trt, self._logger
        plan = self._plan_for(width)
        engine = trt_ok(self._runtime.deserialize_cuda_engine(plan.read_bytes()), f"deserialize {plan.name}",
                         logger)
        context = trt_ok(engine.create_execution_context(), f"create_execution_context ({plan.name})",
                          logger)
        h, w = self.input_size
        inputs, outputs = {}, {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            buf = self._buffer(name, shape, dtype)
            trt_ok(context.set_tensor_address(name, int(buf.device)), f"set_tensor_address({name})", logger)
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
            cuda_call(cuda, "memcpy_htod_async", cuda.memcpy_htod_async, image_buf.device, image_buf.host,
                      stream)
            trt_ok(self._contexts[width].execute_async_v3(stream.handle), "execute_async_v3", self._logger)
            cuda_call(cuda, "memcpy_dtoh_async", cuda.memcpy_dtoh_async, labels_buf.host, labels_buf.device,
                  stream)
            cuda_call(cuda, "stream synchronize", stream.synchronize)
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
