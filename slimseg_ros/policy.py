"""Width policies: which width to run next, from measured latency and battery level.

Pure Python (no ROS, no torch) so the node, the simulator and the tests share one implementation. A policy
is fed one `Observation` per processed frame and answers a `Decision` with a human-readable reason that the
node logs on every switch. Parameters are validated at construction with `ValueError` messages that the node
returns as the reason for rejecting a parameter change.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from slimseg_ros.manifest import same_width

# Tolerance for battery readings a hair outside [0, 1] from float rounding in drivers.
_BATTERY_EPS = 1e-6


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


def _fmt_widths(widths: Sequence[float]) -> str:
    return "[" + ", ".join(f"{w:g}" for w in widths) + "]"


def _check_member(name: str, value: Any, widths: Sequence[float]) -> float:
    """A width parameter must be one of the loaded widths (a float from YAML may differ in the last bit)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    for w in widths:
        if same_width(w, v):
            return w
    raise ValueError(f"{name} {v:g} is not one of the available widths {_fmt_widths(widths)}")


def _check_number(
    name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> float:
    """Validate a scalar parameter against a range and say the range in the error."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if not math.isfinite(v) or too_low or too_high:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ValueError(f"{name} = {v:g} is out of range {lb}{low:g}, {high:g}{hb}")
    return v


def _check_frames(value: Any) -> int:
    """A frame count from YAML/ROS may arrive as 5, 5.0 or a numpy integer; anything else is an error."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        frames = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        frames = None
    if frames is None or not 1 <= frames <= 100:
        raise ValueError(f"window must be an integer number of frames in [1, 100], got {value!r}")
    return frames


def _is_unknown(value: float | None) -> bool:
    """None or NaN (any float type, numpy included): the sensor does not know."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _pct(fraction: float) -> str:
    """Battery as a percentage to 0.1% (BatteryState's float32 0.7 reads 0.69999999, which is 70%)."""
    return f"{round(fraction * 100.0, 1):g}%"


def _ms(seconds: float) -> str:
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


class FixedPolicy(WidthPolicy):
    """Always the configured width: for benchmarks and for operators who want no automation."""

    name = "fixed"

    def __init__(self, widths: Iterable[float], width: float | None = None) -> None:
        super().__init__(widths)
        self.fixed_width = self.widths[-1] if width is None else _check_member("width", width, self.widths)
        self._width = self.fixed_width

    def update(self, obs: Observation) -> Decision:
        """Return the fixed width whatever the observation says."""
        return self._decide(self.fixed_width, f"fixed width {self.fixed_width:g}")

    def reset(self) -> None:
        """Nothing to forget; the width stays fixed."""
        self._width = self.fixed_width

    def describe(self) -> dict[str, Any]:
        """Parameters in effect, for diagnostics and logs."""
        return {**super().describe(), "fixed_width": self.fixed_width}


def default_thresholds(n_widths: int) -> list[float]:
    """Evenly spaced battery levels (0.2, 0.4, 0.6 for four widths): full width needs 60% or more."""
    return [round(0.8 * i / n_widths, 6) for i in range(1, n_widths)]


class BatteryPolicy(WidthPolicy):
    """Battery level picks the width: down at once below a threshold, up only past threshold + hysteresis.

    `thresholds[i]` is the lowest battery fraction at which `widths[i + 1]` is allowed (ascending, one fewer
    than widths). Readings outside [0, 1] are rejected (width kept, reason says why) rather than clamped: the
    usual cause is a driver publishing percent (0..100), which clamping would read as "full" forever.
    """

    name = "battery"

    def __init__(
        self,
        widths: Iterable[float],
        thresholds: Sequence[float] | None = None,
        hysteresis: float = 0.05,
        charging_full: bool = True,
        initial_width: float | None = None,
    ) -> None:
        super().__init__(widths)
        n = len(self.widths)
        if thresholds is None:
            self.thresholds = default_thresholds(n)
        else:
            try:
                self.thresholds = [float(t) for t in thresholds]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"thresholds must be a list of numbers, got {thresholds!r}") from exc
        if len(self.thresholds) != n - 1:
            raise ValueError(
                f"thresholds needs {n - 1} values (one per width above the narrowest, widths "
                f"{_fmt_widths(self.widths)}), got {len(self.thresholds)}: {self.thresholds}"
            )
        for t in self.thresholds:
            _check_number("battery threshold", t, 0.0, 1.0, low_open=True, high_open=True)
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError(f"thresholds must be strictly ascending, got {self.thresholds}")
        self.hysteresis = _check_number("hysteresis", hysteresis, 0.0, 0.5, high_open=True)
        if self.thresholds and self.thresholds[-1] + self.hysteresis > 1.0:
            raise ValueError(
                f"hysteresis {self.hysteresis:g} with top threshold {self.thresholds[-1]:g} exceeds a full "
                f"battery: width {self.widths[-1]:g} could never be regained; lower one of them"
            )
        if not isinstance(charging_full, bool):
            raise ValueError(f"charging_full must be true or false, got {charging_full!r}")
        self.charging_full = charging_full
        self.initial_width = (
            self.widths[-1]
            if initial_width is None
            else _check_member("initial_width", initial_width, self.widths)
        )
        self._width = self.initial_width

    def reset(self) -> None:
        """Back to the initial width; the next known reading moves it down at once if needed."""
        self._width = self.initial_width

    def describe(self) -> dict[str, Any]:
        """Parameters in effect, for diagnostics and logs."""
        return {
            **super().describe(),
            "thresholds": list(self.thresholds),
            "hysteresis": self.hysteresis,
            "charging_full": self.charging_full,
        }

    def allowed_index(self, battery: float, margin: float = 0.0) -> int:
        """Index of the widest width whose threshold (plus `margin`) the battery level reaches."""
        return sum(1 for t in self.thresholds if battery >= t + margin - 1e-12)

    def update(self, obs: Observation) -> Decision:
        """Move down at once when the level falls below the current width's threshold, up with hysteresis."""
        cur = self.widths.index(self._width)
        if obs.charging and self.charging_full:
            return self._decide(self.widths[-1], f"charging: widest width {self.widths[-1]:g} allowed")
        b = obs.battery
        if _is_unknown(b):
            return self._decide(self._width, f"battery unknown: keeping width {self._width:g}")
        b = float(b)
        if b < -_BATTERY_EPS or b > 1.0 + _BATTERY_EPS:
            return self._decide(
                self._width,
                f"battery reading {b:g} outside [0, 1] ignored, keeping width {self._width:g} "
                "(BatteryState.percentage is a fraction; is the driver publishing percent?)",
            )
        b = min(max(b, 0.0), 1.0)
        low = self.allowed_index(b)
        if low < cur:
            # Name the threshold that binds: the one the level is below, just above the width it lands on.
            threshold = _pct(self.thresholds[low])
            level = f"{_pct(b)} below" if _pct(b) != threshold else "just below"
            return self._decide(
                self.widths[low],
                f"battery {level} {threshold} (needed for width {self.widths[low + 1]:g}): "
                f"width {self._width:g} -> {self.widths[low]:g}",
            )
        up = self.allowed_index(b, self.hysteresis)
        if up > cur:
            return self._decide(
                self.widths[up],
                f"battery {_pct(b)} reached {_pct(self.thresholds[up - 1])} + "
                f"{_pct(self.hysteresis)} hysteresis: width {self._width:g} -> {self.widths[up]:g}",
            )
        if cur + 1 < len(self.widths):
            need = self.thresholds[cur] + self.hysteresis
            return self._decide(
                self._width, f"battery {_pct(b)}: width {self._width:g} (next up at {_pct(need)})"
            )
        return self._decide(self._width, f"battery {_pct(b)}: widest width {self._width:g}")


class FpsPolicy(WidthPolicy):
    """Closed loop on measured latency against the frame budget 1/target_fps, built not to oscillate.

    Smoothed latency is the median of the last `window` frames at the current width (robust to single
    spikes). Down: as soon as that median exceeds the budget (a sustained overrun: at least `window` frames
    at this width, most of them over), to the widest narrower width predicted to fit. Up: one step, only
    after `stable_s` seconds with the median within budget, and only if the wider width's predicted latency
    is within budget * (1 - margin). Predictions use latency ratios between widths measured across earlier
    switches (so a load that slows every width alike cancels out), else the ratio of `costs` (default: the
    width itself, a rough stand-in for latency; pass FLOPs or benchmarked latencies for better first guesses).
    A wrong first guess costs one step up and one down; after that the measured ratio prevents a repeat.
    """

    name = "fps"

    def __init__(
        self,
        widths: Iterable[float],
        target_fps: float = 15.0,
        window: int = 5,
        margin: float = 0.15,
        stable_s: float = 5.0,
        costs: Sequence[float] | None = None,
        initial_width: float | None = None,
    ) -> None:
        super().__init__(widths)
        self.target_fps = _check_number("target_fps", target_fps, 0.0, 1000.0, low_open=True)
        self.window = _check_frames(window)
        self.margin = _check_number("margin", margin, 0.0, 0.9)
        self.stable_s = _check_number("stable_s", stable_s, 0.0, 3600.0)
        if costs is None:
            self.costs = list(self.widths)
        else:
            try:
                self.costs = [float(c) for c in costs]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"costs must be a list of numbers, got {costs!r}") from exc
            if len(self.costs) != len(self.widths):
                raise ValueError(
                    f"costs needs one value per width {_fmt_widths(self.widths)}, got {len(self.costs)}"
                )
            if any(not (math.isfinite(c) and c > 0) for c in self.costs):
                raise ValueError(f"costs must be positive numbers, got {self.costs}")
        self.initial_width = (
            self.widths[-1]
            if initial_width is None
            else _check_member("initial_width", initial_width, self.widths)
        )
        self.reset()

    @property
    def budget_s(self) -> float:
        """Seconds per frame that the target frame rate allows."""
        return 1.0 / self.target_fps

    def reset(self) -> None:
        """Forget measurements and ratios; start again at the initial width."""
        self._width = self.initial_width
        self._samples: deque[float] = deque(maxlen=self.window)
        self._stable_since: float | None = None
        self._last_median: dict[float, float] = {}
        # (narrow width, wide width) -> latency(wide) / latency(narrow), measured across switches
        self._ratios: dict[tuple[float, float], float] = {}
        self._pending_ratio: tuple[float, float] | None = None  # (previous width, its median) at the switch
        # The p50 the latest decision compared with the budget (kept across a switch, unlike the window),
        # so diagnostics and the demo's timeline show what the loop acted on.
        self.last_p50_s: float | None = None

    def describe(self) -> dict[str, Any]:
        """Parameters in effect and the learned per-width latencies, for diagnostics."""
        return {
            **super().describe(),
            "target_fps": self.target_fps,
            "window": self.window,
            "margin": self.margin,
            "stable_s": self.stable_s,
            "latency_ms": {f"{w:g}": round(v * 1000.0, 2) for w, v in sorted(self._last_median.items())},
        }

    def smoothed_latency(self) -> float | None:
        """Median latency of the last frames at the current width, None before any frame."""
        return median(self._samples) if self._samples else None

    def _pair_ratio(self, lo: int, hi: int) -> float:
        key = (self.widths[lo], self.widths[hi])
        if key in self._ratios:
            return self._ratios[key]
        return self.costs[hi] / self.costs[lo]

    def predict(self, target: float, current_latency: float) -> float:
        """Latency expected at `target` given the current width's smoothed latency."""
        i, j = self.widths.index(self._width), self.widths.index(target)
        if i == j:
            return current_latency
        lo, hi = min(i, j), max(i, j)
        key = (self.widths[lo], self.widths[hi])
        if key in self._ratios:
            ratio = self._ratios[key]
        else:
            ratio = 1.0
            for k in range(lo, hi):
                ratio *= self._pair_ratio(k, k + 1)
            # A width is no slower than a wider one, so a ratio measured to an even wider width bounds the
            # guess (after a jump 1.0 -> 0.5, the 0.5 -> 0.75 guess cannot exceed the measured 0.5 -> 1.0).
            for k in range(hi + 1, len(self.widths)):
                measured = self._ratios.get((self.widths[lo], self.widths[k]))
                if measured is not None:
                    ratio = min(ratio, measured)
        return current_latency * ratio if j > i else current_latency / ratio

    def _learn_ratio(self, lat_now: float) -> None:
        """Once the new width's window is full, record its latency relative to the width before the switch."""
        if self._pending_ratio is None or len(self._samples) < self.window:
            return
        prev, prev_lat = self._pending_ratio
        self._pending_ratio = None
        if prev_lat <= 0 or lat_now <= 0:
            return
        lo, hi = sorted((prev, self._width))
        ratio = lat_now / prev_lat if self._width == hi else prev_lat / lat_now
        # A load change coinciding with the switch can make the wider width look faster; it never is.
        ratio = max(ratio, 1.0)
        old = self._ratios.get((lo, hi))
        self._ratios[(lo, hi)] = ratio if old is None else 0.5 * (old + ratio)

    def _switch(self, new_width: float, reason: str) -> Decision:
        if new_width != self._width:
            med = self.smoothed_latency()
            self._pending_ratio = (
                (self._width, med) if med is not None and len(self._samples) >= self.window else None
            )
            self._samples.clear()
            self._stable_since = None
        return self._decide(new_width, reason)

    def update(self, obs: Observation, cap: float | None = None) -> Decision:
        """Record the frame's latency at the current width and decide; `cap` bounds the width (budget)."""
        if cap is not None and cap < self._width:
            allowed = [w for w in self.widths if w <= cap] or [self.widths[0]]
            return self._switch(allowed[-1], f"capped at {allowed[-1]:g}")
        lat = obs.latency_s
        if _is_unknown(lat) or not math.isfinite(float(lat)) or float(lat) < 0:
            return self._decide(
                self._width, f"no valid latency measurement ({lat!r}): keeping width {self._width:g}"
            )
        self._samples.append(float(lat))
        med = median(self._samples)
        self.last_p50_s = med
        self._last_median[self._width] = med
        self._learn_ratio(med)
        budget = self.budget_s
        full = len(self._samples) >= self.window
        cur = self.widths.index(self._width)
        if med > budget:
            self._stable_since = None
            if not full:
                return self._decide(
                    self._width,
                    f"p50 {_ms(med)} over budget {_ms(budget)}, confirming "
                    f"({len(self._samples)}/{self.window} frames)",
                )
            if cur == 0:
                return self._decide(
                    self._width,
                    f"narrowest width {self._width:g} still over budget: p50 "
                    f"{_ms(med)} > {_ms(budget)} ({self.target_fps:g} fps)",
                )
            target = self.widths[0]
            for k in range(cur - 1, -1, -1):
                if self.predict(self.widths[k], med) <= budget:
                    target = self.widths[k]
                    break
            pred = self.predict(target, med)
            return self._switch(
                target,
                f"overrun: p50 {_ms(med)} > budget {_ms(budget)} ({self.target_fps:g} fps) over "
                f"{self.window} frames: width {self._width:g} -> {target:g} (predicted {_ms(pred)})",
            )
        if cur + 1 < len(self.widths) and cap is not None and self.widths[cur + 1] > cap:
            self._stable_since = None
            return self._decide(self._width, f"p50 {_ms(med)} within budget; width capped at {cap:g}")
        if cur + 1 == len(self.widths):
            return self._decide(
                self._width, f"widest width {self._width:g}: p50 {_ms(med)} within budget {_ms(budget)}"
            )
        wider = self.widths[cur + 1]
        pred = self.predict(wider, med)
        limit = budget * (1.0 - self.margin)
        if pred > limit:
            self._stable_since = None
            return self._decide(
                self._width,
                f"p50 {_ms(med)}; width {wider:g} predicted {_ms(pred)} > "
                f"{_ms(limit)} (budget - {self.margin:.0%}): keeping {self._width:g}",
            )
        # Stable = within budget AND the wider width predicted to fit, continuously for stable_s.
        if self._stable_since is None:
            self._stable_since = obs.now
        stable_for = obs.now - self._stable_since
        if not full or stable_for < self.stable_s:
            return self._decide(
                self._width,
                f"p50 {_ms(med)} within budget for {stable_for:.1f}/"
                f"{self.stable_s:g} s before trying width {wider:g}",
            )
        return self._switch(
            wider,
            f"stable {stable_for:.1f} s at p50 {_ms(med)}; width {wider:g} predicted {_ms(pred)} <= "
            f"{_ms(limit)}: width {self._width:g} -> {wider:g}",
        )


class BudgetPolicy(WidthPolicy):
    """The narrower of the battery and fps policies: battery caps the width, fps works below the cap."""

    name = "budget"

    def __init__(self, widths: Iterable[float], initial_width: float | None = None, **params: Any) -> None:
        super().__init__(widths)
        battery_keys = {"thresholds", "hysteresis", "charging_full"}
        fps_keys = {"target_fps", "window", "margin", "stable_s", "costs"}
        unknown = set(params) - battery_keys - fps_keys
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for policy 'budget'; known: "
                f"{sorted(battery_keys | fps_keys | {'initial_width'})}"
            )
        self.battery = BatteryPolicy(
            self.widths, initial_width=initial_width, **{k: v for k, v in params.items() if k in battery_keys}
        )
        self.fps = FpsPolicy(
            self.widths, initial_width=initial_width, **{k: v for k, v in params.items() if k in fps_keys}
        )
        self._width = min(self.battery.width, self.fps.width)

    def reset(self) -> None:
        """Reset both inner policies."""
        self.battery.reset()
        self.fps.reset()
        self._width = min(self.battery.width, self.fps.width)

    def describe(self) -> dict[str, Any]:
        """Both inner policies' parameters, for diagnostics."""
        return {**super().describe(), "battery": self.battery.describe(), "fps": self.fps.describe()}

    def update(self, obs: Observation) -> Decision:
        """Battery decides the cap first, then the fps loop decides at or below it."""
        b = self.battery.update(obs)
        f = self.fps.update(obs, cap=b.width)
        width = min(b.width, f.width)
        binding = "battery" if b.width <= f.width and b.width < self.widths[-1] else "fps"
        return self._decide(width, f"width {width:g} set by {binding} (battery: {b.reason}; fps: {f.reason})")


POLICIES: dict[str, type[WidthPolicy]] = {
    "fixed": FixedPolicy,
    "battery": BatteryPolicy,
    "fps": FpsPolicy,
    "budget": BudgetPolicy,
}

PARAMETERS: dict[str, tuple[str, ...]] = {
    "fixed": ("width",),
    "battery": ("thresholds", "hysteresis", "charging_full", "initial_width"),
    "fps": ("target_fps", "window", "margin", "stable_s", "costs", "initial_width"),
    "budget": (
        "thresholds",
        "hysteresis",
        "charging_full",
        "target_fps",
        "window",
        "margin",
        "stable_s",
        "costs",
        "initial_width",
    ),
}


def make_policy(name: str, widths: Iterable[float], **params: Any) -> WidthPolicy:
    """Build a policy by name; parameters that are None take their defaults, unknown ones are an error.

    Pass only the keys in `PARAMETERS[name]` (the node filters its parameters with it).
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy '{name}'; known: {', '.join(POLICIES)}")
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(PARAMETERS[name]))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for policy '{name}'; known: {', '.join(PARAMETERS[name])}"
        )
    return POLICIES[name](widths, **given)
