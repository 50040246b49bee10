"""`slimseg_node` console entry: checks what the node needs before importing it, then runs it.

slimseg_ros.node imports rclpy and the message packages at module level, so a robot without ROS (or a venv
without the ROS wheels) would otherwise meet a raw ModuleNotFoundError traceback from the console script.
Here the check comes first and a missing piece becomes one line naming what to install, with exit code 2.
`--help` (before any --ros-args) prints usage and the parameters without starting ROS.
"""

from __future__ import annotations

import sys

from slimseg_ros import deps
from slimseg_ros.errors import SlimsegError
from slimseg_ros.shutdown import stop_on_signals

ROS_MODULES = (
    "rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "rcl_interfaces", "lifecycle_msgs"
)


def usage() -> str:
    """Usage text: how the node is started and its parameters (from slimseg_ros.params, no ROS needed)."""
    from slimseg_ros.params import SPECS

    lines = [
        "usage: slimseg_node --ros-args [--params-file FILE] [-p NAME:=VALUE ...] [-r image:=TOPIC ...]",
        "",
        "Slimmable semantic segmentation node: runs the width a policy picks, frame by frame.",
        "Usually started with `ros2 launch slimseg_ros slimseg.launch.py manifest:=PATH`.",
        "",
        "parameters (defaults and comments in config/slimseg.yaml):",
    ]
    lines += [f"  {spec.name:<22} {spec.description}" for spec in SPECS]
    return "\n".join(lines)


def _wants_help(argv: list[str]) -> bool:
    """-h/--help among our own arguments; anything after --ros-args belongs to ROS."""
    own = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    return "-h" in own or "--help" in own


def main(args: list[str] | None = None) -> int:
    """Run the node, or exit 2 with one line when rclpy, a message package or every backend is missing;
    a SIGINT/SIGTERM at any instant, imports included, exits 0 without a traceback."""
    stop_on_signals()
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 0


def _run(args: list[str] | None) -> int:
    argv = list(sys.argv[1:] if args is None else args)
    if _wants_help(argv):
        try:
            print(usage())
        except BrokenPipeError:  # piped into e.g. `head`, which closed early: not an error
            sys.stderr.close()
        return 0
    gone = deps.missing(ROS_MODULES)
    if gone:
        print(f"slimseg_node: error: {deps.missing_message(gone)}", file=sys.stderr)
        return 2
    try:
        deps.require_backend("auto")
        from slimseg_ros import node
    except ImportError as exc:  # installed but failing to load, e.g. rclpy built for another Python
        print(f"slimseg_node: error: {deps.import_error_message(exc)}", file=sys.stderr)
        return 2
    except SlimsegError as exc:
        print(f"slimseg_node: error: {exc}", file=sys.stderr)
        return 2
    return node.main(args)


if __name__ == "__main__":
    sys.exit(main())
