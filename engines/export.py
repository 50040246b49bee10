"""export each width as its own ONNX sub-network and write the manifest

Each width is compiled from that width's plain sub-network only (`model.subnet(w)`), wrapped so the graph
takes the camera's uint8 [1,H,W,3] RGB image and returns uint8 [1,H,W] labels. The manifest records input
size, classes, normalisation, FLOPs/params per width at the export size, sha256 per file and, given an
eval JSON from `slimseg eval`, accuracy per width.

examples:
  slimseg export --ckpt models/slimseg_r18 --out models/export
  slimseg export --ckpt models/slimseg_r18 --out models/export --height 360 --width 480 \\
      --eval-json runs/eval_val.json --widths 0.25 1.0
  slimseg export --ckpt models/slimseg_r18 --out models/export \\
      --compare-postprocess --data ../shared/data/camvid --compare-frames 101
  slimseg export --ckpt models/slimseg_camvid_lite0 --out models/export --int8 auto \\
      --data ../shared/data/camvid --int8-json models/export/int8.json

`--int8 auto` (engines/quantize.py) adds a static QDQ INT8 graph per width and keeps it only where it is
measured faster at the node's thread setting and agrees with fp32 on >= 99 % of the dev split's pixels;
each width's manifest entry records its precision and why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from slimseg_ros.engines.quantize import DEFAULT_SCHEME, SCHEMES
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import (
    DEFAULT_POSTPROCESS,
    MANIFEST_NAME,
    POSTPROCESS_MODES,
    FileRef,
    Manifest,
    WidthEntry,
    match_width,
    sha256_file,
)

DEFAULT_HEIGHT, DEFAULT_WIDTH = 360, 480


def onnx_name(width: float, postprocess: str = DEFAULT_POSTPROCESS) -> str:
    """File name of one width's graph (the postprocess mode is in the name only when not the default)."""
    suffix = "" if postprocess == DEFAULT_POSTPROCESS else f"_{postprocess}"
    return f"slimseg_w{width:.2f}{suffix}.onnx"


def export_graph(graph: Any, path: Path, height: int, width: int, opset: int = 17) -> Path:
    """Trace one DeployGraph to ONNX with the legacy exporter (static shapes); check it with onnx.checker."""
    import onnx
    import torch

    graph = graph.eval()
    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    outputs = ["labels", "logits"] if graph.keep_logits else ["labels"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        # Tracing turns shapes into constants on purpose (static input size); its TracerWarnings are noise.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(graph, (example,), str(path), input_names=["image"], output_names=outputs,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        except Exception as exc:  # the exporter raises many types; the first line names the operator
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SlimsegError(f"ONNX export of {path.name} at {height}x{width} failed: {first}",
                               "pooling grids larger than the 1/32 feature map do not export: use an "
                               "export size >= 192 px per side or smaller ppm_bins") from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise SlimsegError(f"exported graph {path} fails onnx.checker: {exc}",
                           "report this as a bug") from exc
    return path


def load_eval_json(path: str | Path) -> dict[float, dict[str, Any]]:
    """Accuracy per width from `slimseg eval` output: {"widths": {"0.25": {"miou": ..}}, "split": ..}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SlimsegError(f"cannot read eval JSON {path}: {exc}",
                           "pass the JSON written by `slimseg eval`") from exc
    if not isinstance(data, dict) or not isinstance(data.get("widths"), dict):
        raise SlimsegError(f"eval JSON {path} has no 'widths' mapping",
                           'expected {"widths": {"0.25": {"miou": ..., "boundary_miou": ...}}, "split": ...}')
    split = data.get("split")
    out: dict[float, dict[str, Any]] = {}
    for key, metrics in data["widths"].items():
        try:
            w = float(key)
        except ValueError as exc:
            raise SlimsegError(f"eval JSON {path}: width key {key!r} is not a number",
                               "use keys like \"0.25\"") from exc
        record = {k: float(metrics[k]) for k in ("miou", "boundary_miou") if metrics.get(k) is not None}
        if split is not None:
            record["split"] = str(split)
        out[round(w, 6)] = record
    return out


def flops_and_params(subnet: Any, height: int, width: int) -> tuple[float, int]:
    """FLOPs of one forward at the export size and parameters, counted by training/flops.py."""
    from slimseg_ros.training.flops import count_flops, count_params

    return float(count_flops(subnet, height, width)), int(count_params(subnet))


def _class_table(meta: dict[str, Any]) -> list[dict[str, Any]]:
    names, colors = meta.get("classes"), meta.get("colors")
    if not names or not colors or len(names) != len(colors):
        raise SlimsegError("checkpoint metadata needs 'classes' and 'colors' of equal length",
                           "save the checkpoint with the dataset's classes.json metadata")
    return [{"id": i, "name": str(n), "color": [int(c) for c in col]} for i, (n, col) in
            enumerate(zip(names, colors, strict=True))]


def export_model(
    model: Any,
    meta: dict[str, Any],
    out_dir: str | Path,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    widths: list[float] | None = None,
    postprocess: str = DEFAULT_POSTPROCESS,
    keep_logits: bool = False,
    opset: int = 17,
    accuracy: dict[float, dict[str, Any]] | None = None,
    checkpoint: str | Path | None = None,
    copy_checkpoint: bool = False,
    log: Any = print,
    input_norm: str | None = None,
) -> Path:
    """Export every width of a loaded SlimSegNet to out_dir and write manifest.yaml; returns its path."""
    from slimseg_ros.engines.onnx_graph import INPUT_NORMS, DeployGraph

    input_norm = input_norm or INPUT_NORMS[0]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if height % 8 or width % 8:
        raise SlimsegError(f"export size {height}x{width} must be a multiple of 8 in both dimensions",
                           "the network works at 1/8 resolution; e.g. 360x480 or 96x128")
    available = [float(w) for w in model.cfg.widths]
    chosen = sorted(available if not widths else [float(w) for w in widths])
    unknown = [w for w in chosen if match_width(w, available) is None]
    if unknown:
        raise SlimsegError(f"widths {unknown} are not in the model", f"the model has {available}")
    mean, std = [float(v) for v in meta["mean"]], [float(v) for v in meta["std"]]
    classes = _class_table(meta)
    entries = []
    for w in chosen:
        t0 = time.perf_counter()
        subnet = model.subnet(w).eval()
        graph = DeployGraph(subnet, mean, std, postprocess=postprocess, keep_logits=keep_logits,
                            input_norm=input_norm)
        path = export_graph(graph, out_dir / onnx_name(w, postprocess), height, width, opset)
        flops, params = flops_and_params(subnet, height, width)
        scores = accuracy.get(round(w, 6)) if accuracy else None
        entries.append(WidthEntry(width=w, onnx=FileRef(path.name, sha256_file(path)), flops=flops,
                                  params=params, accuracy=scores))
        log(f"width {w:g}: {path.name}  {flops / 1e9:.3f} GFLOPs  {params / 1e6:.2f} M params  "
            f"({time.perf_counter() - t0:.1f} s)")
    model_info: dict[str, Any] = {"arch": model.cfg.arch, "num_classes": len(classes)}
    if checkpoint is not None:
        from slimseg_ros.training.checkpoint import checkpoint_paths

        weights, meta_file = checkpoint_paths(checkpoint)
        if copy_checkpoint:
            for src in (weights, meta_file):
                if src.resolve() != (out_dir / src.name).resolve():
                    shutil.copy2(src, out_dir / src.name)
            weights = out_dir / weights.name
        model_info["checkpoint"] = os.path.relpath(weights.resolve(), out_dir.resolve())
        model_info["checkpoint_sha256"] = sha256_file(weights)
    sections = {
        "model": model_info,
        "input": {"height": height, "width": width, "encoding": "rgb8", "layout": "NHWC", "dtype": "uint8"},
        "normalization": {"mean": mean, "std": std, "scale": "0-255"},
        "postprocess": postprocess,
        "outputs": ["labels", "logits"] if keep_logits else ["labels"],
        "classes": classes,
        "ignore_index": int(meta.get("ignore_index", 255)),
        "export": {"opset": opset, "exporter": "torch.onnx legacy (TorchScript)", "input_norm": input_norm},
    }
    return Manifest.from_sections(sections, entries, out_dir).save(out_dir / MANIFEST_NAME)


# --- cheaper post-processing vs exact on real frames --------------------------------------------------------
def compare_postprocess(model: Any, meta: dict[str, Any], manifest_path: Path, data_dir: str | Path,
                        split: str = "val", frames: int = 101, opset: int = 17, log: Any = print
                        ) -> dict[str, Any]:
    """Label agreement with `exact` and mIoU of every cheaper post-processing mode, on real frames of a split.

    All graphs run through ONNX Runtime, i.e. exactly what gets deployed (the manifest's own graphs for its
    mode, the others exported to a temporary folder); labels are compared at the export size against the
    ground truth resized with nearest neighbour. Returns the figures per width and mode.
    """
    import cv2
    import numpy as np
    import torch

    from slimseg_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from slimseg_ros.engines.onnx_graph import DeployGraph
    from slimseg_ros.training.metrics import confusion_matrix, mean_iou

    manifest = Manifest.load(manifest_path)
    images = sorted((Path(data_dir) / split).glob("*.[jp][pn]g"))[:frames]
    if not images:
        raise SlimsegError(f"no images in {Path(data_dir) / split}", "pass the CamVid folder with --data")
    h, w = manifest.input_size
    with tempfile.TemporaryDirectory() as tmp:
        runs = {manifest.postprocess: OnnxRuntimeBackend(manifest)}
        for mode in POSTPROCESS_MODES:
            if mode in runs:
                continue
            graphs = {}
            for width in manifest.widths:
                graph = DeployGraph(model.subnet(width).eval(), meta["mean"], meta["std"], postprocess=mode)
                path = export_graph(graph, Path(tmp) / onnx_name(width, mode), h, w, opset)
                graphs[width] = FileRef(path.name, sha256_file(path))
            runs[mode] = OnnxRuntimeBackend(manifest.with_graphs(mode, graphs, tmp))
        n = manifest.num_classes
        results: dict[str, Any] = {"split": split, "frames": len(images), "size": [h, w], "widths": {}}
        for width in manifest.widths:
            conf = {mode: np.zeros((n, n), np.int64) for mode in runs}
            same = dict.fromkeys(runs, 0)
            total = 0
            for img_path in images:
                image = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB)
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
                label_path = Path(data_dir) / f"{split}annot" / f"{img_path.stem}.png"
                target = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
                if target is None:
                    raise SlimsegError(f"label {label_path} missing or unreadable",
                                       "check the dataset layout")
                target = cv2.resize(target, (w, h), interpolation=cv2.INTER_NEAREST)
                preds = {mode: backend.infer(image, width) for mode, backend in runs.items()}
                total += preds["exact"].size
                for mode, pred in preds.items():
                    same[mode] += int((pred == preds["exact"]).sum())
                    conf[mode] += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), n,
                                                   manifest.ignore_index).numpy()
            exact = mean_iou(conf["exact"])
            row: dict[str, Any] = {"miou_exact": exact}
            for mode in POSTPROCESS_MODES:
                if mode != "exact":
                    miou = mean_iou(conf[mode])
                    row[mode] = {"agreement": same[mode] / total, "miou": miou, "miou_delta": miou - exact}
                    log(f"width {width:g} {mode:>7}: agreement with exact {100 * same[mode] / total:.2f} %  "
                        f"mIoU {miou:.4f} vs exact {exact:.4f} (delta {miou - exact:+.4f})")
            results["widths"][f"{width:g}"] = row
        for backend in runs.values():
            backend.close()
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint (stem, .safetensors or .json)")
    parser.add_argument("--out", required=True, help="output folder for the ONNX files and manifest.yaml")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="input height (default 360)")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="input width (default 480)")
    parser.add_argument("--widths", type=float, nargs="+", help="subset of the model's widths (default all)")
    parser.add_argument("--eval-json", help="accuracy per width (JSON from `slimseg eval`) for the manifest")
    parser.add_argument("--keep-logits", action="store_true", help="add a float32 'logits' output")
    parser.add_argument("--postprocess", choices=POSTPROCESS_MODES, default=DEFAULT_POSTPROCESS,
                        help="fast: argmax at 1/8 + nearest; quarter (default): 2x bilinear, argmax at "
                             "1/4 + nearest; exact: full-size bilinear, argmax")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--copy-checkpoint", action="store_true",
                        help="copy the checkpoint into --out (the torch backend then needs only that folder)")
    parser.add_argument("--compare-postprocess", action="store_true",
                        help="after export, compare each post-processing mode with exact (--data)")
    parser.add_argument("--data", help="CamVid-layout dataset folder for --compare-postprocess")
    parser.add_argument("--split", default="val", help="split for --compare-postprocess (default val)")
    parser.add_argument("--compare-frames", type=int, default=101, help="frames for --compare-postprocess")
    parser.add_argument("--compare-json", help="write the comparison figures to this JSON file")
    parser.add_argument("--int8", choices=("off", "auto"), default="off",
                        help="auto: INT8 per width where measured faster and >= 99 %% label agreement "
                             "with fp32 on train:0001TP (needs --data)")
    parser.add_argument("--int8-scheme", choices=list(SCHEMES), default=DEFAULT_SCHEME,
                        help="tensorrt (default): symmetric S8S8 QDQ, buildable by TensorRT; "
                             "onnxruntime-cpu: U8S8, onnxruntime's fast x86 form (TensorRT cannot build it)")
    parser.add_argument("--int8-threads", type=int, default=1,
                        help="onnxruntime threads the INT8 decision is timed at (the node's; default 1)")
    parser.add_argument("--int8-frames", type=int, default=30, help="timed frames per width and setting")
    parser.add_argument("--int8-json", help="write the INT8 figures (agreement, mIoU, latency) to this file")


def run(args: argparse.Namespace) -> int:
    import torch

    from slimseg_ros.training.checkpoint import load_checkpoint

    if (args.compare_postprocess or args.int8 == "auto") and not args.data:
        raise SlimsegError("--compare-postprocess and --int8 auto need --data DIR",
                           "pass the CamVid folder, e.g. ../shared/data/camvid")
    if args.int8_threads < 1 or args.int8_frames < 1:
        raise SlimsegError("--int8-threads and --int8-frames must be >= 1", "e.g. --int8-threads 1")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model, meta = load_checkpoint(args.ckpt)
    model.eval()
    accuracy = load_eval_json(args.eval_json) if args.eval_json else None
    path = export_model(model, meta, args.out, args.height, args.width, args.widths, args.postprocess,
                        args.keep_logits, args.opset, accuracy, checkpoint=args.ckpt,
                        copy_checkpoint=args.copy_checkpoint)
    print(f"wrote {path}")
    if args.compare_postprocess:
        results = compare_postprocess(model, meta, path, args.data, args.split, args.compare_frames,
                                      args.opset)
        if args.compare_json:
            Path(args.compare_json).write_text(json.dumps(results, indent=2) + "\n")
            print(f"wrote {args.compare_json}")
    if args.int8 == "auto":
        from slimseg_ros.engines.quantize import int8_auto, report_markdown

        report = int8_auto(path, args.data, threads=args.int8_threads, frames=args.int8_frames,
                           scheme=args.int8_scheme)
        print(report_markdown(report))
        if args.int8_json:
            Path(args.int8_json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.int8_json}")
    return 0
