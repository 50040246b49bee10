"""build one TensorRT engine per width from a manifest

Uses the TensorRT 10 Python API: ONNX parser, builder config with a workspace limit, FP16, or INT8 with an
entropy calibrator over dataset images (plus a calibration cache per width), and a timing cache shared by
all widths so later builds are faster. Each plan is recorded in the manifest with the TensorRT version, GPU
name, compute capability, precision and sha256. A plan already built for this TensorRT and GPU is kept; one
built elsewhere is rebuilt from its ONNX (or refused with a clear error if there is no ONNX).

examples:
  slimseg build-engines --manifest models/export/manifest.yaml --precision fp16
  slimseg build-engines --manifest models/export/manifest.yaml --precision int8 \\
      --calib-data ../shared/data/camvid/train --calib-frames 200 --timing-cache models/export/timing.cache
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

import numpy as np

from slimseg_ros.backends.trt_compat import USE, TrtTarget, decide_plan
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest, sha256_file, verify_file

PRECISIONS = ("fp16", "int8", "fp32")
TRT_MISSING = "TensorRT is not installable here (vendor index unreachable)"


def plan_name(width: float, precision: str, target: TrtTarget) -> str:
    """Plan file name: per width, precision, GPU architecture and TensorRT version, so plans never collide."""
    sm = target.compute_capability.replace(".", "")
    return f"slimseg_w{width:.2f}_{precision}_sm{sm}_trt{target.trt_version}.plan"


def plan_intact(manifest: Manifest, plan: dict[str, Any]) -> bool:
    """True if a recorded plan's file exists and matches its sha256 (a corrupt plan is rebuilt, not used)."""
    try:
        verify_file(manifest.resolve(plan["file"]), plan.get("sha256"))
    except SlimsegError:
        return False
    return True


def calibration_images(folder: str | Path, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """Up to `count` RGB uint8 images from a folder (e.g. a CamVid split), resized to (h, w) bilinearly."""
    import cv2

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = [p for p in files if not p.parent.name.endswith("annot")]  # never calibrate on label maps
    if not files:
        raise SlimsegError(f"no calibration images in {folder}",
                           "pass a folder of JPEG/PNG frames, e.g. camvid/train")
    step = max(1, len(files) // count)
    images = []
    for path in files[::step][:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SlimsegError(f"calibration image {path} is unreadable", "remove it or re-copy the dataset")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        images.append(np.ascontiguousarray(rgb))
    return images


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
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if precision == "int8":
        if calibrator is None:
            raise SlimsegError("int8 needs calibration data", "pass --calib-data DIR (a folder of frames)")
        config.set_flag(trt.BuilderFlag.INT8)
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


def build_width(manifest: Manifest, width: float, precision: str, trt: Any, cuda: Any, device: Any,
                logger: Any, workspace_mb: int = 1024, timing_cache: Path | None = None,
                calib_images: list[np.ndarray] | None = None, force: bool = False) -> str:
    """Build (or keep) one width's plan and record it in the manifest (not saved); returns what was done."""
    target = trt_target(trt, device)
    entry = manifest.entry(width)
    onnx_path = manifest.onnx_path(width)
    has_onnx = onnx_path is not None and onnx_path.is_file()
    decision = decide_plan(entry.get("engines", []), target, precision, has_onnx,
                           plan_ok=lambda plan: plan_intact(manifest, plan), width=width)
    if decision.action == USE and not force:
        return f"kept {decision.plan['file']} ({decision.reason})"
    if not has_onnx:
        raise SlimsegError(f"width {width:g}: no ONNX file to build from", "re-run `slimseg export`")
    manifest.verify(width, "onnx")
    plan_path = manifest.resolve(plan_name(width, precision, target))
    calibrator = None
    if precision == "int8":
        if not calib_images:
            raise SlimsegError("int8 needs calibration data", "pass --calib-data DIR (a folder of frames)")
        cache = manifest.resolve(f"calib_w{width:.2f}.cache")  # activations differ per width: one cache each
        calibrator = make_calibrator(trt, cuda, calib_images, cache)
    try:
        build_plan(trt, logger, onnx_path, plan_path, precision, workspace_mb, timing_cache, calibrator)
    finally:
        if calibrator is not None:
            calibrator.free()
    manifest.set_engine(width, {
        "file": plan_path.name, "sha256": sha256_file(plan_path), "precision": precision,
        "trt_version": target.trt_version, "gpu": target.gpu, "compute_capability": target.compute_capability,
        "workspace_mb": int(workspace_mb),
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    return f"built {plan_path.name} ({decision.reason})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest.yaml written by `slimseg export`")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="engine precision (default fp16)")
    parser.add_argument("--calib-data", help="folder of frames for INT8 calibration (e.g. camvid/train)")
    parser.add_argument("--calib-frames", type=int, default=200,
                        help="frames used for calibration (default 200)")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit in MiB")
    parser.add_argument("--timing-cache", help="timing cache file, read if present and updated after builds")
    parser.add_argument("--widths", type=float, nargs="+", help="subset of widths (default all)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even plans that match this machine")


def run(args: argparse.Namespace) -> int:
    manifest = Manifest.load(args.manifest)
    widths = args.widths or manifest.widths
    for w in widths:
        manifest.entry(w)  # unknown widths fail before any slow work
    if args.precision == "int8" and not args.calib_data:
        raise SlimsegError("--precision int8 needs --calib-data DIR",
                           "pass a folder of frames, e.g. camvid/train")
    trt, cuda = import_tensorrt()
    device = cuda.Device(args.device)
    context = device.retain_primary_context()
    context.push()
    try:
        logger = make_logger(trt)
        images = (calibration_images(args.calib_data, manifest.input_size, args.calib_frames)
                  if args.precision == "int8" else None)
        timing = Path(args.timing_cache) if args.timing_cache else None
        for w in widths:
            print(f"width {w:g}: " + build_width(manifest, w, args.precision, trt, cuda, device, logger,
                                                 args.workspace_mb, timing, images, args.force))
            manifest.save()  # after every width, so an interrupted run keeps what it built
    finally:
        context.pop()
        context.detach()
    print(f"wrote {manifest.path}")
    return 0
