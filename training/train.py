"""Train the slimmable network (SlimSeg, inplace, no_boundary, independent; KA/MGD via config imports).

Runs single-process by default and under `torchrun --nproc_per_node N` with DistributedDataParallel.
Writes <out>/final(.safetensors/.json) (independent: final_w<width> per width), last + train_state every
train.ckpt_every steps, metrics.jsonl (per epoch and per validation), config.yaml and summary.json.

Examples:
  slimseg train --config training/configs/camvid_slimseg.yaml --data ../shared/data/camvid --out runs/slimseg
  slimseg train --config training/configs/camvid_cpu.yaml --data ../shared/data/camvid --out runs/cpu --resume
  slimseg train --config training/configs/camvid_cpu.yaml --data ../shared/data/camvid --out runs/q \\
      --set train.steps=50 --set data.train_splits=[train,val]
  torchrun --nproc_per_node 2 -m slimseg_ros.cli train --config training/configs/camvid_slimseg.yaml \\
      --data ../shared/data/camvid --out runs/ddp
"""

from __future__ import annotations

import argparse

from slimseg_ros.errors import SlimsegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of `slimseg train`."""
    parser.add_argument("--config", required=True, help="training YAML (see training/configs/)")
    parser.add_argument("--data", required=True, help="dataset root in the CamVid layout")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/train_state")
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: cuda:LOCAL_RANK if available)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:
    """Build the trainer from config and train; prints the final per-width validation mIoU."""
    from pathlib import Path

    from slimseg_ros.training.config import load_config
    from slimseg_ros.training.distributed import cleanup, init_distributed
    from slimseg_ros.training.trainer import Trainer, miou_line

    cfg = load_config(args.config, args.set)
    out = Path(args.out)
    if not args.resume and (out / "train_state.json").exists():
        raise SlimsegError(f"{out} already holds a training run",
                           "pass --resume to continue it or pick a new --out")
    info = init_distributed(args.device)
    try:
        trainer = Trainer(cfg, args.data, out, resume=args.resume, dist_info=info,
                          progress=not args.no_progress)
        summary = trainer.run()
        if info.is_main:
            print(f"done: {summary['step']} steps in {summary['wall_s']} s; {miou_line(summary['val'])}")
            print("checkpoints: " + ", ".join(summary["checkpoints"]))
    finally:
        cleanup(info)
    return 0
