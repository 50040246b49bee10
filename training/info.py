"""FLOPs and parameters of every width of a model or checkpoint.

Counts are taken on each width's plain sub-network (what export compiles), boundary head excluded.

examples:
  slimseg info --arch resnet18 --num-classes 11 --height 360 --width 480
  slimseg info --arch mobilenetv2 --json mnv2_costs.json
  slimseg info --ckpt runs/slimseg_r18/best
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.encoders import ENCODERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `slimseg info`."""
    parser.add_argument(
        "--ckpt", help="checkpoint (stem, .safetensors or .json); replaces --arch, --num-classes, --widths"
    )
    parser.add_argument("--arch", choices=sorted(ENCODERS), default="resnet18", help="encoder family")
    parser.add_argument("--num-classes", type=int, default=11, help="number of classes (default: 11)")
    parser.add_argument("--widths", type=float, nargs="+", help="widths (default: 0.25 0.5 0.75 1.0)")
    parser.add_argument("--height", type=int, default=360, help="input height in pixels (default: 360)")
    parser.add_argument("--width", type=int, default=480, help="input width in pixels (default: 480)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON to this file")


def _build(args: argparse.Namespace):
    from slimseg_ros.training.model import ModelConfig, SlimSegNet

    if args.ckpt:
        from slimseg_ros.training.checkpoint import load_checkpoint

        return load_checkpoint(args.ckpt)[0]
    extra = {"widths": tuple(sorted(args.widths))} if args.widths else {}
    return SlimSegNet(ModelConfig(arch=args.arch, num_classes=args.num_classes, **extra))


def _print_table(title: str, rows: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(f"{'width':>6} {'GFLOPs':>9} {'params (M)':>11} {'FLOPs vs 1.0':>13}")
        for r in rows:
            print(f"{r['width']:>6g} {r['flops'] / 1e9:>9.3f} {r['params'] / 1e6:>11.3f} "
                  f"{r['relative']:>12.1%}")
        return
    table = Table(title=title)
    for col in ("width", "GFLOPs", "params (M)", "FLOPs vs widest"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['width']:g}", f"{r['flops'] / 1e9:.3f}", f"{r['params'] / 1e6:.3f}",
                      f"{r['relative']:.1%}")
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    """Build (or load) the model, count each width, print the table and optionally write JSON."""
    import torch

    from slimseg_ros.training.flops import width_costs

    torch.set_num_threads(min(torch.get_num_threads(), 4))
    model = _build(args).eval()
    costs = width_costs(model, args.height, args.width)
    widest = costs[-1].flops
    rows = [{**c.to_dict(), "relative": c.flops / widest} for c in costs]
    cfg = model.cfg
    _print_table(f"{cfg.arch}, {cfg.num_classes} classes, input {args.height}x{args.width}", rows)
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "arch": cfg.arch, "num_classes": cfg.num_classes, "height": args.height, "width": args.width,
                "model": cfg.to_dict(), "widths": rows,
            }, indent=2) + "\n")
        except OSError as exc:
            raise SlimsegError(f"cannot write {args.json}: {exc}") from exc
        print(f"wrote {args.json}")
    return 0
