"""Sliding windows for rates and latency percentiles, shared by the worker thread and the diagnostics timer.

Bounded (fixed-size deques), so a node running for days uses constant memory, and locked, because the
worker thread writes while the executor thread reads.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds (e.g. frames in, labels out)."""

    def __init__(self, window_s: float = 5.0, maxlen: int = 10_000) -> None:
        if window_s <= 0:
            raise ValueError(f"rate window must be > 0 s, got {window_s}")
        self.window_s = float(window_s)
        self._stamps: deque[float] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        """Record one event (monotonic seconds)."""
        with self._lock:
            self._stamps.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        """Events per second in the window ending at `now`; 0 with fewer than two events."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._stamps and self._stamps[0] < now - self.window_s:
                self._stamps.popleft()
            if len(self._stamps) < 2:
                return 0.0
            span = max(now - self._stamps[0], 1e-9)
            return (len(self._stamps) - 1) / span


class LatencyWindow:
    """The last `size` durations (seconds) with p50/p95, for diagnostics and the benchmark."""

    def __init__(self, size: int = 300) -> None:
        if size < 1:
            raise ValueError(f"latency window needs size >= 1, got {size}")
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """Record one duration."""
        with self._lock:
            self._values.append(float(seconds))

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def percentiles_ms(self, *qs: float) -> list[float | None]:
        """Percentiles in milliseconds (None when empty), e.g. `percentiles_ms(50, 95)`."""
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        if values.size == 0:
            return [None for _ in qs]
        return [float(v) * 1e3 for v in np.percentile(values, qs)]


class SequenceGaps:
    """Frames a publisher sent that never reached our callback, from the per-publisher sequence numbers
    the middleware attaches to each message (rclpy MessageInfo, where the RMW fills them in).

    A gap is a frame lost in the middleware or overwritten in the subscription's queue before the executor
    took it. A sequence number that goes back (a restarted publisher) starts a new baseline; frames lost
    before the first one seen, or after the last, cannot be known this way. Bounded: at most `max_publishers`
    publishers are tracked (the oldest is forgotten).
    """

    def __init__(self, max_publishers: int = 64) -> None:
        self.max_publishers = max_publishers
        self._last: dict[str, int] = {}
        self.lost = 0
        self.supported: bool | None = None  # None until a message says whether the RMW fills the numbers

    def observe(self, publisher: str, sequence: int) -> int:
        """Record one received message; returns how many of this publisher's messages were skipped."""
        if sequence <= 0 or sequence >= 2**63 - 1:  # RMW without sequence numbers: 0 or the "unsupported" max
            self.supported = False if self.supported is None else self.supported
            return 0
        self.supported = True
        last = self._last.pop(publisher, None)  # re-inserted last: dict order = least recently seen first
        self._last[publisher] = sequence
        if len(self._last) > self.max_publishers:
            self._last.pop(next(iter(self._last)))
        if last is None or sequence <= last:
            return 0
        gap = sequence - last - 1
        self.lost += gap
        return gap
