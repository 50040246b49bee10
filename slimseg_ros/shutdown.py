"""How the node process reacts to SIGINT and SIGTERM: one way out, clean at any instant.

Kept apart from the node (no ROS import) so the console entry installs it before importing rclpy: a signal
during the imports, rclpy.init, configure or spinning then raises KeyboardInterrupt in the main thread, and
the one `finally` of node.main frees what exists, with further signals ignored while it does.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (SIGTERM would otherwise kill)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.default_int_handler)


def ignore_signals() -> None:
    """While resources are freed on the way out, a second signal must not interrupt the cleanup."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
