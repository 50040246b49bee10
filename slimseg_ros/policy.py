"""Width policies: which width to run next, from measured latency and battery level.

Pure Python (no ROS, no torch) so the node, the simulator and the tests share one implementation. A policy
is fed one `Observation` per processed frame and answers a `Decision` with a human-readable reason that the
node logs on every switch. Parameters are validated at construction with `ValueError` messages that the node
returns as the reason for rejecting a parameter change.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from slimseg_ros.policy_params import BatteryParams, FpsParams, arguments

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
        if abs(w - v) < 1e-9:
            return w
    raise ValueError(f"{name} {v:g} is not one of the available widths {_fmt_widths(widths)}")


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
        hysteresis: float | None = None,
        charging_full: bool | None = None,
        charging_stable_s: float | None = None,
        initial_width: float | None = None,
    ) -> None:
        super().__init__(widths)
        n = len(self.widths)
        given = {
            "hysteresis": hysteresis, "charging_full": charging_full, "charging_stable_s": charging_stable_s
        }
        params = BatteryParams(
            thresholds=default_thresholds(n) if thresholds is None else thresholds,
            **{k: v for k, v in given.items() if v is not None},
        )
        self.thresholds = list(params.thresholds)
        if len(self.thresholds) != n - 1:
            raise ValueError(
                f"thresholds needs {n - 1} values (one per width above the narrowest, widths "
                f"{_fmt_widths(self.widths)}), got {len(self.thresholds)}: {self.thresholds}"
            )
        self.hysteresis = params.hysteresis
        self.charging_full = params.charging_full
        self.charging_stable_s = params.charging_stable_s
        self._charging_since: float | None = None
        self.initial_width = (
            self.widths[-1]
            if initial_width is None
            else _check_member("initial_width", initial_width, self.widths)
        )
        self._width = self.initial_width

    def reset(self) -> None:
        """Back to the initial width; the next known reading moves it down at once if needed."""
        self._width = self.initial_width
        self._charging_since = None

    def describe(self) -> dict[str, Any]:
        """Parameters in effect, for diagnostics and logs."""
        return {
            **super().describe(),
            "thresholds": list(self.thresholds),
            "hysteresis": self.hysteresis,
            "charging_full": self.charging_full,
            "charging_stable_s": self.charging_stable_s,
        }

    def allowed_index(self, battery: float, margin: float = 0.0) -> int:
        """Index of the widest width whose threshold (plus `margin`) the battery level reaches."""
        return sum(1 for t in self.thresholds if battery >= t + margin - 1e-12)

    def _charging_held(self, obs: Observation) -> float | None:
        """Seconds charging has been reported without a break (None: not charging, or not allowed to widen).

        Charging widens only after `charging_stable_s`, like every other step up, so a flapping charger
        status cannot make the width oscillate; when charging stops, the level rule steps down at once.
        """
        if not (obs.charging and self.charging_full):
            self._charging_since = None
            return None
        if self._charging_since is None:
            self._charging_since = obs.now
        return obs.now - self._charging_since

    def update(self, obs: Observation) -> Decision:
        """Move down at once when the level falls below the current width's threshold, up with hysteresis."""
        cur = self.widths.index(self._width)
        charging = self._charging_held(obs)
        if charging is not None and charging >= self.charging_stable_s:
            return self._decide(
                self.widths[-1], f"charging for {charging:.1f} s: widest width {self.widths[-1]:g} allowed"
            )
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
        target_fps: float | None = None,
        window: int | None = None,
        margin: float | None = None,
        stable_s: float | None = None,
        costs: Sequence[float] | None = None,
        initial_width: float | None = None,
    ) -> None:
        super().__init__(widths)
        given = {"target_fps": target_fps, "window": window, "margin": margin, "stable_s": stable_s}
        params = FpsParams(**{k: v for k, v in given.items() if v is not None})
        self.target_fps, self.window = params.target_fps, params.window
        self.margin, self.stable_s = params.margin, params.stable_s
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
        battery_keys = set(arguments("battery"))
        fps_keys = {*arguments("fps"), "costs"}
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

# policy -> the keyword arguments it accepts: its parameter table (policy_params) plus what the node supplies
PARAMETERS: dict[str, tuple[str, ...]] = {
    "fixed": ("width",),
    "battery": (*arguments("battery"), "initial_width"),
    "fps": (*arguments("fps"), "costs", "initial_width"),
    "budget": (*arguments("budget"), "costs", "initial_width"),
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
