"""INT8 per width where it pays: static QDQ graphs, calibrated on real frames, kept only when measured better.

INT8 is not a free win on a CPU: it cut the wide ResNet widths' latency to about a third, but a narrow
width, whose time is mostly fixed per-op cost, ran no faster and lost more to thread overheads (issue 15).
So `slimseg export --int8 auto` decides per width, from two measurements on this machine:
- speed: the fp32 and INT8 sessions timed interleaved in one run (engines/bench.measure_grid) at the thread
  setting the node will use (`threads`, default 1), and also at every other setting, for the record;
- accuracy: label agreement with fp32 on the development split (CamVid train frames of sequence 0001TP,
  never used for calibration) must stay >= 99 %; the mIoU of both against the ground truth is reported.
The manifest's entry of each width then names its file, `precision` (fp32 | int8) and `precision_reason`.

What is quantised: the encoder after its stem, i.e. its convs with their ReLU6 (Clip) and residual Adds,
so each conv's output range is the activation's, not the raw conv output's. Measured on the Lite0 model
(docs/bench.md): quantising only the convs left the ReLU6 ranges to the raw outputs and agreement fell to
41-78 %; the stem (the normalised image) and the head (context, decoder, classifier: its logits decide the
argmax) cost another 0.5-1 point, so they stay fp32. Weights are per output channel, min/max calibration
on frames of another sequence (val, 0016E5), resized to the export size as the node resizes them.

Two schemes (`SCHEMES`), because the two runtimes want different INT8:
- `tensorrt` (default): the QDQ form TensorRT's explicit quantisation takes (`tensorrt_qdq_problems`
  checks every written graph against it): signed INT8 activations and weights, all zero points 0,
  activations per tensor, weights per output channel (axis 0), biases left float (TensorRT's parser refuses
  the int32 bias DequantizeLinear onnxruntime writes by default), opset >= 13. One file serves onnxruntime
  and a TensorRT build, which needs no calibrator for it (the scales are in the graph).
- `onnxruntime-cpu`: unsigned activations (asymmetric), signed weights, int32 biases: the U8S8 form
  onnxruntime's x86 kernels are fast at. Measured here, the symmetric S8S8 graph ran no faster than fp32
  on onnxruntime's CPU provider while U8S8 ran at about 0.6x at full width. TensorRT cannot build it.

Calibration frames are chosen in one place, `calibration_frames`, for this quantiser and for TensorRT's
entropy calibrator (engines/tensorrt_build.py, for a width whose graph is fp32).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import FileRef, Manifest, sha256_file

DEV_SPLIT = "train:0001TP"  # sequence-held-out development split (docs/results.md)
CALIBRATION_SPLIT = "val"  # sequence 0016E5: calibration never sees the frames it is judged on
MIN_AGREEMENT = 0.99  # INT8 labels must equal fp32's on at least this share of dev pixels
QUANTIZED_OPS = ["Conv", "Clip", "Relu", "Add", "Concat", "AveragePool", "Resize"]  # within ENCODER only
ENCODER = "/encoder/"  # node-name prefix of the encoder in the exported graph (torch module path)
CALIBRATION_FRAMES = 32  # spread evenly over CALIBRATION_SPLIT
# scheme -> quantize_static settings; the first is the default
SCHEMES: dict[str, dict[str, Any]] = {
    "tensorrt": {"activation_type": "QInt8", "extra_options": {
        "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}},
    "onnxruntime-cpu": {"activation_type": "QUInt8", "extra_options": {
        "ActivationSymmetric": False, "WeightSymmetric": True}},
}
DEFAULT_SCHEME = next(iter(SCHEMES))
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# calibration name -> (onnxruntime CalibrationMethod, extra options); the first is the default
CALIBRATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "minmax": ("MinMax", {}),
    "percentile": ("Percentile", {"CalibPercentile": 99.99}),
}
DEFAULT_CALIBRATION = next(iter(CALIBRATIONS))


def is_depthwise(node: Any) -> bool:
    """A grouped Conv (EfficientNet-Lite's depthwise 3x3/5x5): the layers INT8 hurts most here."""
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


def split_frames(data: str | Path, split: str, size: tuple[int, int], count: int | None = None
                 ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """RGB frames at (height, width) and their label maps (nearest) from `split` or `split:PREFIX`.

    `count` picks that many frames evenly spread over the split (all when None).
    """
    import cv2

    name, _, prefix = split.partition(":")
    folder = Path(data) / name
    files = sorted(p for p in folder.glob(f"{prefix}*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SlimsegError(f"no frames for split {split!r} in {folder}",
                           "pass the CamVid folder with --data (e.g. ../shared/data/camvid)")
    if count is not None and count < len(files):
        files = [files[round(i * (len(files) - 1) / max(count - 1, 1))] for i in range(count)]
    h, w = size
    images, targets = [], []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SlimsegError(f"unreadable frame {path}", "remove it or pass another dataset")
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_LINEAR)
        images.append(np.ascontiguousarray(rgb))
        label = cv2.imread(str(Path(data) / f"{name}annot" / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        targets.append(None if label is None else cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST))
    return images, targets


def calibration_frames(data: str | Path, size: tuple[int, int], count: int = CALIBRATION_FRAMES
                       ) -> list[np.ndarray]:
    """The INT8 calibration frames, RGB uint8 at (height, width): the one choice both INT8 paths use."""
    return split_frames(data, CALIBRATION_SPLIT, size, count)[0]


class _Frames:
    """onnxruntime's CalibrationDataReader protocol over uint8 frames (the graph's own input)."""

    def __init__(self, input_name: str, frames: list[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter([{input_name: f[None]} for f in frames])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_graph(fp32: Path, int8: Path, frames: list[np.ndarray], scheme: str = DEFAULT_SCHEME,
                   calibration: str = DEFAULT_CALIBRATION, depthwise_fp32: bool = False) -> Path:
    """Write the static QDQ INT8 version of one width's graph, calibrated on `frames`.

    `calibration` and `depthwise_fp32` are the knobs scripts/int8_sensitivity.py measures; the export uses
    the defaults (min/max, depthwise convs quantised).
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if scheme not in SCHEMES:
        raise SlimsegError(f"unknown INT8 scheme {scheme!r}", f"use one of {', '.join(SCHEMES)}")
    if calibration not in CALIBRATIONS:
        raise SlimsegError(f"unknown calibration {calibration!r}", f"use one of {', '.join(CALIBRATIONS)}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))  # shape inference + folding, as the quantiser expects
        nodes = onnx.load(str(prepared)).graph.node
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        keep_fp32 = [n.name for n in nodes if not n.name.startswith(ENCODER)] + convs[:1]  # head, stem
        if depthwise_fp32:
            keep_fp32 += [n.name for n in nodes if is_depthwise(n)]
        if not any(n.name.startswith(ENCODER) for n in nodes):
            raise SlimsegError(f"{fp32}: no node named {ENCODER}*", "export the graph with `slimseg export`")
        session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        settings = SCHEMES[scheme]
        method, calibration_options = CALIBRATIONS[calibration]
        quantize_static(
            str(prepared), str(int8), _Frames(input_name, frames), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=keep_fp32, per_channel=True,
            activation_type=getattr(QuantType, settings["activation_type"]), weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options={**settings["extra_options"], **calibration_options},
        )
    model = onnx.load(str(int8))
    used = {n.domain for n in model.graph.node}  # the optimiser declares its private domains; none is used
    kept = [o for o in model.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(int8))
    if scheme == "tensorrt":
        problems = tensorrt_qdq_problems(model)
        if problems:
            raise SlimsegError(f"{int8.name} does not follow TensorRT's explicit quantisation: "
                               + "; ".join(problems[:5]), "report this as a bug (onnxruntime version?)")
    return int8


def tensorrt_qdq_problems(model: Any) -> list[str]:
    """Where an ONNX QDQ graph breaks TensorRT's explicit-quantisation rules (empty: it follows them).

    The rules: QuantizeLinear/DequantizeLinear from opset 13; INT8 only, symmetric (every zero point 0,
    scales > 0); activations per tensor; a weight (a Conv's input 1) per tensor or per output channel
    (axis 0, one scale per channel); no DequantizeLinear of a Conv's bias (float biases only).
    """
    from onnx import numpy_helper

    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        problems.append(f"opset {opset} < 13")
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, k))
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        scale = constants.get(node.input[1])
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or not (scale > 0).all():
            problems.append(f"{node.name}: scale not a positive constant")
            continue
        if zero is None or zero.dtype != np.int8 or zero.any():
            problems.append(f"{node.name}: zero point must be int8 0, got "
                            f"{None if zero is None else (zero.dtype, zero.ravel()[:3].tolist())}")
        source = constants.get(node.input[0])
        if node.op_type == "DequantizeLinear" and source is not None and source.dtype != np.int8:
            problems.append(f"{node.name}: dequantises a {source.dtype} constant, not int8")
        uses = consumers.get(node.output[0], [])
        weight = [c for c, k in uses if c.op_type == "Conv" and k == 1]
        if any(c.op_type == "Conv" and k == 2 for c, k in uses):
            problems.append(f"{node.name}: a quantised Conv bias (TensorRT takes float biases only)")
        elif weight and scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            channels = constants[node.input[0]].shape[0] if source is not None else None
            if axis != 0 or scale.size != channels:
                problems.append(f"{node.name}: per-channel weight scales on axis {axis} ({scale.size} "
                                f"scales, {channels} output channels): must be axis 0, one per channel")
        elif not weight and scale.size != 1:
            problems.append(f"{node.name}: an activation with {scale.size} scales: must be per tensor")
    return problems


def int8_name(fp32_file: str) -> str:
    """slimseg_w0.25.onnx -> slimseg_w0.25_int8.onnx"""
    stem, dot, ext = fp32_file.rpartition(".")
    return f"{stem}_int8{dot}{ext}"


def _confusion(pred: np.ndarray, target: np.ndarray, n: int, ignore: int) -> np.ndarray:
    keep = (target != ignore) & (target < n)
    return np.bincount(target[keep].astype(np.int64) * n + pred[keep], minlength=n * n).reshape(n, n)


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in prediction or ground truth."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else math.nan


def accuracy(fp32: Any, int8: Any, widths: list[float], images: list[np.ndarray],
             targets: list[np.ndarray | None], num_classes: int, ignore: int
             ) -> dict[float, dict[str, float]]:
    """Per width: share of pixels where INT8 equals fp32, and both mIoUs against the ground truth."""
    out = {}
    for w in widths:
        same = total = 0
        conf = {p: np.zeros((num_classes, num_classes), np.int64) for p in ("fp32", "int8")}
        for image, target in zip(images, targets, strict=True):
            a, b = fp32.infer(image, w), int8.infer(image, w)
            same += int((a == b).sum())
            total += a.size
            if target is not None:
                conf["fp32"] += _confusion(a, target, num_classes, ignore)
                conf["int8"] += _confusion(b, target, num_classes, ignore)
        m32, m8 = miou(conf["fp32"]), miou(conf["int8"])
        out[w] = {"agreement": same / total, "miou_fp32": m32, "miou_int8": m8, "miou_delta": m8 - m32}
    return out


def decide(acc: dict[str, float], speed: dict[str, dict[str, float]], threads: int) -> tuple[str, str]:
    """(precision, reason) for one width from its agreement and its fp32/INT8 p50 at the node's threads."""
    ratio = speed["int8"]["p50_ms"] / speed["fp32"]["p50_ms"]
    timing = (f"int8 p50 {speed['int8']['p50_ms']:.1f} ms vs fp32 {speed['fp32']['p50_ms']:.1f} ms "
              f"({ratio:.2f}x) at {threads} thread{'s' if threads != 1 else ''}")
    quality = (f"label agreement {100 * acc['agreement']:.2f} % on {DEV_SPLIT}, "
               f"mIoU {100 * acc['miou_delta']:+.2f} points")
    if ratio >= 1.0:
        return "fp32", f"int8 not faster: {timing}; {quality}"
    if acc["agreement"] < MIN_AGREEMENT:
        return "fp32", f"int8 agreement below {100 * MIN_AGREEMENT:.0f} %: {quality}; {timing}"
    return "int8", f"{timing}; {quality}"


def int8_auto(manifest_path: Path, data: str | Path, threads: int = 1, frames: int = 30, warmup: int = 3,
              calibration_count: int = CALIBRATION_FRAMES, scheme: str = DEFAULT_SCHEME, log: Any = print
              ) -> dict[str, Any]:
    """Quantise every width, measure, keep INT8 where it pays; rewrite the manifest. Returns the figures."""
    from slimseg_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from slimseg_ros.engines.bench import grid_rows, measure_grid, setting_label, thread_settings

    manifest = Manifest.load(manifest_path)
    size = manifest.input_size
    calib = calibration_frames(data, size, calibration_count)
    dev_images, dev_targets = split_frames(data, DEV_SPLIT, size)
    quantized = manifest.copy()
    for w in manifest.widths:
        fp32_file = manifest.entry(w).onnx.file
        path = quantize_graph(manifest.verify(w), manifest.resolve(int8_name(fp32_file)), calib, scheme)
        graph = FileRef(path.name, sha256_file(path))
        quantized.record_precision(w, "int8", f"candidate ({scheme})", onnx=graph)
        log(f"width {w:g}: quantised ({scheme}) to {path.name} on {len(calib)} {CALIBRATION_SPLIT} frames")
    settings = thread_settings(len(_cores()))
    if (threads, False) not in settings:
        settings.insert(0, (threads, False))
    backends = {(p, st): OnnxRuntimeBackend(m, threads=st[0], spin=st[1])
                for p, m in (("fp32", manifest), ("int8", quantized)) for st in settings}
    try:
        acc = accuracy(backends[("fp32", settings[0])], backends[("int8", settings[0])], manifest.widths,
                       dev_images, dev_targets, manifest.num_classes, manifest.ignore_index)
        runners = {(w, p, *st): (lambda f, b=b, w=w: b.infer(f, w))
                   for (p, st), b in backends.items() for w in manifest.widths}
        rows = grid_rows(measure_grid(runners, dev_images, frames, warmup))
    finally:
        for backend in backends.values():
            backend.close()
    report: dict[str, Any] = {"scheme": scheme, "dev_split": DEV_SPLIT, "dev_frames": len(dev_images),
                              "calibration": f"{CALIBRATION_SPLIT}, {len(calib)} frames", "threads": threads,
                              "load_average": _load(), "widths": {}}
    for w in manifest.widths:
        speed = {p: rows[(w, p, threads, False)] for p in ("fp32", "int8")}
        precision, reason = decide(acc[w], speed, threads)
        if precision == "int8":
            manifest.record_precision(w, precision, reason, onnx=quantized.entry(w).onnx)
        else:
            manifest.resolve(int8_name(manifest.entry(w).onnx.file)).unlink(missing_ok=True)
            manifest.record_precision(w, precision, reason)
        report["widths"][f"{w:g}"] = {
            "precision": precision, "reason": reason, **acc[w],
            "latency": {f"{p} {setting_label(*st)}": rows[(w, p, *st)] for p in ("fp32", "int8")
                        for st in settings}}
        log(f"width {w:g}: {precision} ({reason})")
    manifest.record_export("int8", {
        "mode": "auto", "scheme": scheme, "calibration": report["calibration"], "dev_split": DEV_SPLIT,
        "min_agreement": MIN_AGREEMENT, "threads": threads})
    manifest.save()
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The figures of one `int8_auto` run as markdown: accuracy and decision, then latency per setting."""
    widths = report["widths"]
    lines = [f"Scheme `{report['scheme']}`; calibration {report['calibration']}; agreement and mIoU on "
             f"{report['dev_split']} ({report['dev_frames']} frames); decision at {report['threads']} "
             f"thread(s); load average {report['load_average']} at the end.", "",
             "| width | agreement with fp32 | mIoU fp32 | mIoU int8 | delta (points) | precision kept |",
             "|---|---|---|---|---|---|"]
    for w, r in widths.items():
        lines.append(f"| {w} | {100 * r['agreement']:.2f} % | {100 * r['miou_fp32']:.2f} | "
                     f"{100 * r['miou_int8']:.2f} | {100 * r['miou_delta']:+.2f} | {r['precision']} |")
    settings = list(next(iter(widths.values()))["latency"])
    lines += ["", "| width | " + " | ".join(f"{s}: p50 / p95 ms, CPU ms" for s in settings) + " |",
              "|---|" + "---|" * len(settings)]
    for w, r in widths.items():
        cells = [f"{v['p50_ms']:.1f} / {v['p95_ms']:.1f}, {v['cpu_ms']:.1f}" for v in r["latency"].values()]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cores() -> set[int]:
    import os

    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def _load() -> float | None:
    import os

    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
