"""build one TensorRT engine per width from a manifest

The offline side of TensorRT: reads calibration frames, calls the runtime's builder
(slimseg_ros/backends/tensorrt/build.py) and records each plan in the manifest with the TensorRT version,
GPU name, compute capability, precision and sha256. A plan already built for this TensorRT and GPU is kept;
one built elsewhere is rebuilt from its ONNX (or refused with a clear error if there is no ONNX).

INT8: a width that `slimseg export --int8 auto` made INT8 has a QDQ graph (scheme `tensorrt`), which
TensorRT builds by explicit quantisation, whatever --precision says and without calibration. An fp32
width built with --precision int8 is calibrated by TensorRT's entropy calibrator on the very frames the QDQ
graphs were calibrated on (engines/quantize.calibration_frames), so both INT8 paths see the same data.

examples:
  slimseg build-engines --manifest models/export/manifest.yaml --precision fp16
  slimseg build-engines --manifest models/export/manifest.yaml --precision int8 \\
      --calib-data ../shared/data/camvid --timing-cache models/export/timing.cache
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from slimseg_ros.backends.tensorrt.build import (
    CALIBRATION_HINT,
    build_width,
    import_tensorrt,
    make_logger,
    plan_intact,
    plan_precision,
    trt_target,
)
from slimseg_ros.backends.tensorrt.compat import PRECISIONS, USE, decide_plan
from slimseg_ros.engines.quantize import CALIBRATION_FRAMES, CALIBRATION_SPLIT, calibration_frames
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import Manifest

TRT_MISSING = "TensorRT is not installable here (vendor index unreachable)"


def build_or_keep(manifest: Manifest, width: float, precision: str, trt: Any, cuda: Any, device: Any,
                  logger: Any, workspace_mb: int = 1024, timing_cache: Path | None = None,
                  calib_images: list[np.ndarray] | None = None, force: bool = False) -> str:
    """Keep a width's matching plan or build one beside the manifest and record it (not saved); says which."""
    target = trt_target(trt, device)
    precision = plan_precision(manifest, width, precision)
    entry = manifest.entry(width)
    onnx_path = manifest.onnx_path(width)
    has_onnx = onnx_path is not None and onnx_path.is_file()
    decision = decide_plan(entry.engines, target, precision, has_onnx,
                           plan_ok=lambda plan: plan_intact(manifest.file_path(plan.file), plan), width=width)
    if decision.action == USE and not force:
        return f"kept {decision.plan.file} ({decision.reason})"
    if not has_onnx:
        raise SlimsegError(f"width {width:g}: no ONNX file to build from", "re-run `slimseg export`")
    path = manifest.verify(width, "onnx")
    plan = build_width(path, manifest.root, width, precision, trt, cuda, device, logger, workspace_mb,
                       timing_cache, calib_images)
    manifest.record_plan(width, plan)
    return f"built {plan.file} ({decision.reason})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest.yaml written by `slimseg export`")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="engine precision (default fp16)")
    parser.add_argument("--calib-data", help="CamVid-layout dataset folder: INT8 of an fp32 graph calibrates "
                        f"on its {CALIBRATION_SPLIT!r} split, as `slimseg export --int8 auto` does")
    parser.add_argument("--calib-frames", type=int, default=CALIBRATION_FRAMES,
                        help=f"frames used for calibration (default {CALIBRATION_FRAMES}, as --int8 auto)")
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
    calibrated = [w for w in widths if args.precision == "int8" and manifest.precision(w) != "int8"]
    if calibrated and not args.calib_data:
        raise SlimsegError(f"--precision int8 of the fp32 graphs of widths {calibrated} needs --calib-data "
                           "DIR", CALIBRATION_HINT)
    trt, cuda = import_tensorrt()
    device = cuda.Device(args.device)
    context = device.retain_primary_context()
    context.push()
    try:
        logger = make_logger(trt)
        images = (calibration_frames(args.calib_data, manifest.input_size, args.calib_frames)
                  if calibrated else None)
        timing = Path(args.timing_cache) if args.timing_cache else None
        for w in widths:
            print(f"width {w:g}: " + build_or_keep(manifest, w, args.precision, trt, cuda, device, logger,
                                                 args.workspace_mb, timing, images, args.force))
            manifest.save()  # after every width, so an interrupted run keeps what it built
    finally:
        context.pop()
        context.detach()
    print(f"wrote {manifest.path}")
    return 0
