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
