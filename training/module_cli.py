"""The shared frame of the `python -m slimseg_ros.training.<tool>` commands (partition, step_cost).

One place says how such a command parses its arguments and reports a user error: the message on stderr,
prefixed with the tool's name, and exit status 2 (as the `slimseg` CLI does), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from slimseg_ros.errors import SlimsegError


def module_main(module: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace], int], argv: list[str] | None = None) -> int:
    """Parse `argv` for `python -m <module>` (description: `doc`'s first line) and run; 2 on a user error."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SlimsegError as exc:
        print(f"{module.rsplit('.', 1)[-1]}: {exc}", file=sys.stderr)
        return 2
