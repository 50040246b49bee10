"""mIoU, per-class and boundary (trimap) IoU, FLOPs and params per width of one or more checkpoints.

Predictions are made at the evaluation size (the checkpoint's `data.eval_size`, or --size, or the stored
image size), upsampled bilinearly to the label's full resolution and compared there. The boundary mIoU
counts only pixels within --boundary-px pixels of a ground-truth class border (training/boundary.py).

Examples:
  slimseg eval --ckpt runs/slimseg/final --data ../shared/data/camvid --split val --out eval.json --md eval.md
  slimseg eval --ckpt runs/slimseg/final --data ../shared/data/camvid --widths 0.25 1.0
  # independent baseline: one checkpoint per width, merged into one table
  slimseg eval --ckpt runs/ind/final_w0.25 --ckpt runs/ind/final_w0.5 --ckpt runs/ind/final_w0.75 \\
      --ckpt runs/ind/final_w1 --data ../shared/data/camvid --split val
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import match_width
from slimseg_ros.training.boundary import trimap_band
from slimseg_ros.training.metrics import SegmentationMeter
from slimseg_ros.training.slimmable import set_width


def predict(net: nn.Module, images: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Class ids [N,H,W] at `out_size` from a network producing logits at its input size."""
    logits = net(images)
    if tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits.float(), size=tuple(out_size), mode="bilinear", align_corners=False)
    return logits.argmax(1)


@torch.inference_mode()
def evaluate_nets(nets: dict[float, nn.Module], dataset: torch.utils.data.Dataset, device: torch.device | str,
                  num_classes: int, ignore_index: int, boundary_px: int = 3,
                  class_names: Sequence[str] | None = None, batch_size: int = 4,
                  num_workers: int = 0) -> dict[str, dict[str, Any]]:
    """Per-width metrics {'0.25': {miou, boundary_miou, pixel_acc, per_class, ...}} over a labelled dataset.

    `nets` maps width -> slimmable network holding that width (switched before use); each is put in eval
    mode. Images in a batch must share a size (CamVid's do); use batch_size 1 otherwise.
    """
    meters = {w: SegmentationMeter(num_classes, ignore_index, device) for w in nets}
    for net in nets.values():
        net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        band = trimap_band(labels, num_classes, ignore_index, boundary_px)
        for w, net in nets.items():
            set_width(net, w)
            meters[w].update(predict(net, images, labels.shape[-2:]), labels, band)
    return {f"{w:g}": meters[w].summary(class_names) for w in sorted(nets)}


def load_nets(ckpts: Sequence[str], widths: Sequence[float] | None, device: torch.device
              ) -> tuple[dict[float, nn.Module], dict[str, Any]]:
    """Load checkpoints and map each requested width to the checkpoint that holds it (later ones win)."""
    from slimseg_ros.training.checkpoint import load_checkpoint

    nets: dict[float, nn.Module] = {}
    meta0: dict[str, Any] = {}
    for ck in ckpts:
        model, meta = load_checkpoint(ck)
        meta0 = meta0 or meta
        for w in model.cfg.widths:
            nets[float(w)] = model.to(device)
    if widths:
        missing = [w for w in widths if match_width(w, nets) is None]
        if missing:
            have = ", ".join(f"{w:g}" for w in sorted(nets))
            raise SlimsegError(f"width(s) {missing} not in the checkpoint(s); available: {have}")
        nets = {k: v for k, v in nets.items() if match_width(k, widths) is not None}
    return nets, meta0


def complexity(nets: dict[float, nn.Module], size: Sequence[int]) -> dict[str, dict[str, int]]:
    """FLOPs and params of each width's plain sub-network at the evaluated input size."""
    from slimseg_ros.training.flops import count_flops, count_params

    out = {}
    for w, net in nets.items():
        sub = net.subnet(w)
        out[f"{w:g}"] = {"flops": count_flops(sub, int(size[0]), int(size[1])), "params": count_params(sub)}
    return out


def markdown_table(result: dict[str, Any]) -> str:
    """Summary table (one row per width) and per-class IoU table, in GitHub markdown."""
    widths = sorted(result["widths"], key=float)

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}"

    lines = [f"Split `{result['split']}` ({result['frames']} frames), input {result['size'][1]}x"
             f"{result['size'][0]}, boundary band {result['boundary_px']} px.", "",
             "| width | mIoU | boundary mIoU | pixel acc | GFLOPs | params (M) |",
             "|---|---|---|---|---|---|"]
    for w in widths:
        r = result["widths"][w]
        lines.append(f"| {w} | {pct(r['miou'])} | {pct(r['boundary_miou'])} | {pct(r['pixel_acc'])} | "
                     f"{r['flops'] / 1e9:.2f} | {r['params'] / 1e6:.2f} |")
    names = list(result["widths"][widths[0]]["per_class"])
    lines += ["", "| width | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for w in widths:
        pc = result["widths"][w]["per_class"]
        lines.append(f"| {w} | " + " | ".join(pct(pc[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of `slimseg eval`."""
    parser.add_argument("--ckpt", action="append", required=True,
                        help="checkpoint stem or file (repeat for one-checkpoint-per-width baselines)")
    parser.add_argument("--data", required=True, help="dataset root in the CamVid layout")
    parser.add_argument("--split", default="val", help="split folder to evaluate (default: val)")
    parser.add_argument("--widths", type=float, nargs="+", help="widths to evaluate (default: all)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="network input size (default: checkpoint's data.eval_size, else image size)")
    parser.add_argument("--boundary-px", type=int, default=3, help="trimap band half-width in pixels")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit", type=int, help="evaluate only the first N frames (quick checks)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--md", help="write the markdown tables here")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the markdown table."""
    from slimseg_ros.training.data import SegmentationDataset, build_eval_transform

    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    nets, meta = load_nets(args.ckpt, args.widths, device)
    data_cfg = (meta.get("train") or {}).get("data", {})
    size = args.size or data_cfg.get("eval_size")
    ignore = int(meta.get("ignore_index", 255))
    num_classes = next(iter(nets.values())).cfg.num_classes
    ds = SegmentationDataset(args.data, [args.split], num_classes, ignore, build_eval_transform(size),
                             meta.get("mean"), meta.get("std"), label_transform=False, limit=args.limit)
    if size is None:
        h, w = ds[0]["image"].shape[-2:]
        size = [int(h), int(w)]
    start = time.time()
    per_width = evaluate_nets(nets, ds, device, num_classes, ignore, args.boundary_px,
                              class_names=meta.get("classes"), batch_size=args.batch_size)
    costs = complexity(nets, size)
    result = {"split": args.split, "data": str(args.data), "frames": len(ds), "size": [int(s) for s in size],
              "boundary_px": args.boundary_px, "checkpoints": list(args.ckpt),
              "seconds": round(time.time() - start, 1),
              "widths": {w: {**per_width[w], **costs[w]} for w in per_width}}
    table = markdown_table(result)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table)
    return 0
