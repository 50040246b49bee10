"""How the node process reacts to SIGINT and SIGTERM: one way out, clean at any instant.

Kept apart from the node (no ROS import) so the console entry installs it before importing rclpy: a signal
during the imports, rclpy.init, configure or spinning then raises KeyboardInterrupt in the main thread, and
the one `finally` of node.main frees what exists, with further signals ignored while it does.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


Handlers = dict[int, object]


def stop_on_signals() -> Handlers:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (SIGTERM would otherwise kill).

    Returns the handlers it replaced, for restore_signals."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, signal.default_int_handler)
    return previous


def restore_signals(previous: Handlers) -> None:
    """Put back the handlers found before: main() called in-process (tests, tools) must not leave the
    signals ignored, since child processes inherit an ignored SIGINT and then cannot be stopped by it."""
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def ignore_signals() -> None:
    """While resources are freed on the way out, a second signal must not interrupt the cleanup."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
