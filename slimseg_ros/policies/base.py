"""What every width policy shares: the observation it is fed, the decision it answers, the base class and
the small helpers (width lists, unknown readings, units in reasons). Pure Python: no ROS, no torch."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slimseg_ros.manifest import same_width

# Tolerance for battery readings a hair outside [0, 1] from float rounding in drivers.
BATTERY_EPS = 1e-6


@dataclass(frozen=True)
class Observation:
    """What the node knows after a frame: time, that frame's processing latency, battery state.

    `latency_s` is the time the worker was busy with the frame (receipt to publish), which bounds throughput;
    `battery` is BatteryState.percentage (0..1, None or NaN = unknown); `charging` None = unknown.
    """

    now: float
    latency_s: float | None = None
    battery: float | None = None
    charging: bool | None = None


@dataclass(frozen=True)
class Decision:
    """The width for the next frame, why, and whether it differs from the width before this update."""

    width: float
    reason: str
    changed: bool


def validate_widths(widths: Iterable[float]) -> tuple[float, ...]:
    """Check a width list once so every policy can index it without further guards; returns it ascending."""
    try:
        values = [float(w) for w in widths]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"widths must be a list of numbers, got {widths!r}") from exc
    if not values:
        raise ValueError("widths is empty: at least one width must be available")
    for w in values:
        if not (math.isfinite(w) and 0.0 < w <= 1.0):
            raise ValueError(f"width {w} is not in (0, 1]")
    if len(set(values)) != len(values):
        raise ValueError(f"widths contain duplicates: {values}")
    return tuple(sorted(values))


def fmt_widths(widths: Sequence[float]) -> str:
    return "[" + ", ".join(f"{w:g}" for w in widths) + "]"


def check_member(name: str, value: Any, widths: Sequence[float]) -> float:
    """A width parameter must be one of the loaded widths (a float from YAML may differ in the last bit)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    for w in widths:
        if same_width(w, v):
            return w
    raise ValueError(f"{name} {v:g} is not one of the available widths {fmt_widths(widths)}")


def is_unknown(value: float | None) -> bool:
    """None or NaN (any float type, numpy included): the sensor does not know."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def pct(fraction: float) -> str:
    """Battery as a percentage to 0.1% (BatteryState's float32 0.7 reads 0.69999999, which is 70%)."""
    return f"{round(fraction * 100.0, 1):g}%"


def ms(seconds: float) -> str:
    return f"{seconds * 1000.0:.1f} ms"


class WidthPolicy(ABC):
    """Chooses the width for the next frame; one `update` per processed frame, deterministic given inputs."""

    name: str = ""

    def __init__(self, widths: Iterable[float]) -> None:
        self.widths: tuple[float, ...] = validate_widths(widths)
        self._width: float = self.widths[-1]

    @property
    def width(self) -> float:
        """The width the next frame should run at."""
        return self._width

    @abstractmethod
    def update(self, obs: Observation) -> Decision:
        """Take one frame's observation and return the width for the next frame."""

    @abstractmethod
    def reset(self) -> None:
        """Forget all history (e.g. after the node is re-enabled), back to the initial width."""

    def describe(self) -> dict[str, Any]:
        """Parameters in effect, for diagnostics and logs."""
        return {"policy": self.name, "widths": list(self.widths), "width": self._width}

    def _decide(self, new_width: float, reason: str) -> Decision:
        changed = new_width != self._width
        self._width = new_width
        return Decision(width=new_width, reason=reason, changed=changed)
