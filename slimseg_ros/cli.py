"""The `slimseg` command: one entry point, subcommands imported only when used.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`, plus a
module docstring whose first line is the summary and whose remainder (examples) becomes the epilog. Lazy
import keeps `slimseg --help` fast and lets runtime-only installs (no torch) use the runtime subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from slimseg_ros import deps
from slimseg_ros.errors import SlimsegError

# name -> module; order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "info": "slimseg_ros.training.info",
    "train": "slimseg_ros.training.train",
    "eval": "slimseg_ros.training.evaluate",
    "export": "slimseg_ros.engines.export",
    "build-engines": "slimseg_ros.engines.tensorrt_build",
    "bench": "slimseg_ros.engines.bench",
    "simulate": "slimseg_ros.simulate",
    "demo": "slimseg_ros.demo",
    "record": "slimseg_ros.record",
}

SUMMARIES: dict[str, str] = {
    "info": "FLOPs and parameters of every width of a model or checkpoint",
    "train": "train the slimmable network (SlimSeg, baselines, KA, MGD)",
    "eval": "mIoU, per-class and boundary IoU per width of a checkpoint",
    "export": "export each width as its own ONNX sub-network and write the manifest",
    "build-engines": "build one TensorRT engine per width from a manifest",
    "bench": "latency per width of a manifest's models on a backend",
    "simulate": "drive a width policy with latency profiles and a draining battery",
    "demo": "the whole idea end to end: node, frame player, battery drain, pictures; or a rosbag2",
    "record": "record a running node's outputs to a rosbag2 MCAP (Foxglove, ros2 bag play)",
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<14} {SUMMARIES[name]}" for name in COMMANDS)
    return argparse.ArgumentParser(
        prog="slimseg",
        description="Slimmable semantic segmentation: train once, run at the width the robot can afford.",
        epilog=f"commands:\n{lines}\n\nRun `slimseg COMMAND --help` for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="slimseg COMMAND [options]",
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; user errors become one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"slimseg: unknown command '{name}'; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name])
    except ImportError as exc:
        print(f"slimseg {name}: error: {deps.import_error_message(exc)}", file=sys.stderr)
        return 2
    doc = (module.__doc__ or SUMMARIES[name]).strip()
    summary, _, epilog = doc.partition("\n")
    parser = argparse.ArgumentParser(
        prog=f"slimseg {name}",
        description=summary,
        epilog=epilog.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except SlimsegError as exc:
        print(f"slimseg {name}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional package a subcommand imports lazily, e.g. rclpy
        print(f"slimseg {name}: error: {deps.import_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slimseg {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
