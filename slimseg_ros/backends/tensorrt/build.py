"""Build TensorRT plans (TensorRT 10 Python API): the one builder, used by `slimseg build-engines` and by the
backend when a plan must be (re)built at start.

ONNX parser, builder config with a workspace limit, FP16, or INT8, and an optional timing cache shared by all
widths. INT8 comes two ways. A QDQ graph (a width whose manifest precision is int8, written by
`slimseg export --int8 auto`) carries its own scales: TensorRT's explicit quantisation builds it with the INT8
flag and no calibrator. An fp32 graph gets an entropy calibrator over the frames engines/quantize.py chooses
(plus a calibration cache per width). `build_width` returns the
plan's record and writes nothing else: the offline CLI records it in the manifest, the runtime in its plan
cache (cache.py).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from slimseg_ros.backends.tensorrt.compat import PRECISIONS, TrtTarget
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest, PlanRecord, sha256_file, verify_file

__all__ = ["PRECISIONS", "build_plan", "build_width", "has_qdq", "import_tensorrt", "make_calibrator",
           "make_logger", "plan_intact", "plan_name", "plan_precision", "trt_target"]
CALIBRATION_HINT = "pass --calib-data DIR (the CamVid-layout dataset folder), or export with --int8 auto"


def plan_precision(manifest: Manifest, width: float, requested: str) -> str:
    """The precision a width's plan gets: int8 for a QDQ graph (its precision is in the graph), else the one
    requested."""
    return "int8" if manifest.precision(width) == "int8" else requested


def plan_name(width: float, precision: str, target: TrtTarget) -> str:
    """Plan file name: per width, precision, GPU architecture and TensorRT version, so plans never collide."""
    sm = target.compute_capability.replace(".", "")
    return f"slimseg_w{width:.2f}_{precision}_sm{sm}_trt{target.trt_version}.plan"


def plan_intact(path: Path, plan: PlanRecord) -> bool:
    """True if a plan's file exists and matches its sha256 (a corrupt plan is rebuilt, not used)."""
    try:
        verify_file(path, plan.sha256)
    except SlimsegError:
        return False
    return True


# --- the thin TensorRT layer (runs only where tensorrt and pycuda import) ----------------------------------
def import_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver) with an initialised CUDA driver, or SlimsegError saying why not."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise SlimsegError(f"TensorRT build needs tensorrt and pycuda ({exc.name} is missing)",
                           "install TensorRT 10 and pycuda on the GPU machine (e.g. JetPack 6)") from exc
    if int(trt.__version__.split(".")[0]) < 10:
        raise SlimsegError(f"TensorRT {trt.__version__} is too old", "TensorRT 10 or newer is required")
    cuda.init()
    return trt, cuda


def trt_target(trt: Any, device: Any) -> TrtTarget:
    """What plans built here are valid for: this TensorRT version and this GPU."""
    major, minor = device.compute_capability()
    return TrtTarget(trt_version=trt.__version__, gpu=device.name(), compute_capability=f"{major}.{minor}")


def make_logger(trt: Any, severity: str = "WARNING") -> Any:
    """A TensorRT logger that keeps the last error, so failures can be raised with TensorRT's own words."""

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.min_severity = getattr(trt.ILogger, severity)
            self.last_error = ""

        def log(self, level: Any, msg: str) -> None:
            if level in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.last_error = msg
            if int(level) <= int(self.min_severity):
                print(f"[TensorRT {level.name}] {msg}")

    return RecordingLogger()


def make_calibrator(trt: Any, cuda: Any, images: list[np.ndarray], cache: Path) -> Any:
    """IInt8EntropyCalibrator2 feeding uint8 NHWC frames (what the graph takes) one at a time from the GPU."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.images, self.index, self.cache = images, 0, cache
            self.device = cuda.mem_alloc(images[0].nbytes) if images else None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.images):
                return None
            cuda.memcpy_htod(self.device, np.ascontiguousarray(self.images[self.index][None]))
            self.index += 1
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return self.cache.read_bytes() if self.cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            self.cache.write_bytes(bytes(data))

        def free(self) -> None:
            if self.device is not None:
                self.device.free()
                self.device = None

    return EntropyCalibrator()


def has_qdq(trt: Any, network: Any) -> bool:
    """Whether a parsed network has Quantize/Dequantize layers, i.e. is explicitly quantised."""
    qdq = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in qdq for i in range(network.num_layers))


def build_plan(trt: Any, logger: Any, onnx_path: Path, plan_path: Path, precision: str, workspace_mb: int,
               timing_cache: Path | None = None, calibrator: Any = None) -> Path:
    """Parse one ONNX file and serialise a plan for it; every failure raises with TensorRT's message."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SlimsegError(f"TensorRT could not parse {onnx_path}: {errors}",
                           "re-export with a supported opset")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    explicit = has_qdq(trt, network)
    if explicit and precision != "int8":
        raise SlimsegError(f"{onnx_path.name} is an INT8 (QDQ) graph; {precision} was asked",
                           "build it as int8 (its scales are in the graph), or export that width in fp32")
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation needs the flag too
        if not explicit:  # TensorRT ignores a calibrator for a QDQ network, so none is set there
            if calibrator is None:
                raise SlimsegError(f"int8 of the fp32 graph {onnx_path.name} needs calibration data",
                                   CALIBRATION_HINT)
            config.int8_calibrator = calibrator
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SlimsegError(f"TensorRT failed to build {onnx_path}: {logger.last_error or 'no message'}",
                           "check the workspace limit (--workspace-mb) and the TensorRT log above")
    plan_path.write_bytes(bytes(serialized))
    if cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return plan_path


def build_width(onnx_path: Path, plan_dir: Path, width: float, precision: str, trt: Any, cuda: Any,
                device: Any, logger: Any, workspace_mb: int = 1024, timing_cache: Path | None = None,
                calib_images: list[np.ndarray] | None = None) -> PlanRecord:
    """Build one width's plan into plan_dir from its (verified) ONNX file; the caller records the result."""
    target = trt_target(trt, device)
    plan_path = plan_dir / plan_name(width, precision, target)
    calibrator = None
    if precision == "int8" and calib_images:  # used only if the graph is fp32 (build_plan decides)
        cache = plan_dir / f"calib_w{width:.2f}.cache"  # activations differ per width: one cache each
        calibrator = make_calibrator(trt, cuda, calib_images, cache)
    try:
        build_plan(trt, logger, onnx_path, plan_path, precision, workspace_mb, timing_cache, calibrator)
    finally:
        if calibrator is not None:
            calibrator.free()
    return PlanRecord(
        file=plan_path.name, sha256=sha256_file(plan_path), precision=precision,
        trt_version=target.trt_version, gpu=target.gpu, compute_capability=target.compute_capability,
        workspace_mb=int(workspace_mb),
        built=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
