"""A worker thread that processes only the newest item: ROS callbacks hand frames over and return at once.

Inference takes longer than a camera period on small robots; queueing frames would add latency without
bound, so a newer frame replaces a waiting one and the replaced one is reported as dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class NewestFrameWorker(Generic[T]):
    """One daemon thread, one slot: `submit` never blocks, `process` runs on the worker thread."""

    def __init__(
        self,
        process: Callable[[T], None],
        on_drop: Callable[[T], None] | None = None,
        on_error: Callable[[T, BaseException], None] | None = None,
        name: str = "slimseg-worker",
    ) -> None:
        self._process = process
        self._on_drop = on_drop
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: T | None = None
        self._has_item = False
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand over an item; returns False (and reports the older item dropped) if one was waiting."""
        dropped: T | None = None
        replaced = False
        with self._cond:
            if self._stopping:
                return False
            if self._has_item:
                dropped, replaced = self._slot, True
            self._slot, self._has_item = item, True
            self._cond.notify_all()
        if replaced and self._on_drop is not None:
            self._on_drop(dropped)  # type: ignore[arg-type]
        return not replaced

    def idle(self) -> bool:
        """True when nothing is waiting and nothing is being processed (tests and shutdown use it)."""
        with self._cond:
            return not self._has_item and not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until the waiting item (if any) and the one in progress are done; False on timeout.

        A lifecycle deactivate drains this way, so frames accepted while active still get their labels.
        """
        with self._cond:
            return self._cond.wait_for(lambda: not self._has_item and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the item in progress, report a waiting one as dropped (on_drop), join the thread."""
        with self._cond:
            self._stopping = True
            dropped, had_item = self._slot, self._has_item
            self._slot, self._has_item = None, False
            self._cond.notify_all()
        if had_item and self._on_drop is not None:
            self._on_drop(dropped)  # type: ignore[arg-type]
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_item and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item, self._slot, self._has_item = self._slot, None, False
                self._busy = True
            try:
                self._process(item)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a bad frame must not kill the worker
                if self._on_error is not None:
                    self._on_error(item, exc)  # type: ignore[arg-type]
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()  # wakes wait_idle
