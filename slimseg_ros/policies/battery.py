"""The battery policy: the level picks the width, down at once, up with hysteresis or a stable charge."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from slimseg_ros.policies.base import (
    BATTERY_EPS,
    Decision,
    Observation,
    WidthPolicy,
    check_member,
    fmt_widths,
    is_unknown,
    pct,
)
from slimseg_ros.policy_params import BatteryParams


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
                f"{fmt_widths(self.widths)}), got {len(self.thresholds)}: {self.thresholds}"
            )
        self.hysteresis = params.hysteresis
        self.charging_full = params.charging_full
        self.charging_stable_s = params.charging_stable_s
        self._charging_since: float | None = None
        self.initial_width = (
            self.widths[-1]
            if initial_width is None
            else check_member("initial_width", initial_width, self.widths)
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
        if is_unknown(b):
            return self._decide(self._width, f"battery unknown: keeping width {self._width:g}")
        b = float(b)
        if b < -BATTERY_EPS or b > 1.0 + BATTERY_EPS:
            return self._decide(
                self._width,
                f"battery reading {b:g} outside [0, 1] ignored, keeping width {self._width:g} "
                "(BatteryState.percentage is a fraction; is the driver publishing percent?)",
            )
        b = min(max(b, 0.0), 1.0)
        low = self.allowed_index(b)
        if low < cur:
            # Name the threshold that binds: the one the level is below, just above the width it lands on.
            threshold = pct(self.thresholds[low])
            level = f"{pct(b)} below" if pct(b) != threshold else "just below"
            return self._decide(
                self.widths[low],
                f"battery {level} {threshold} (needed for width {self.widths[low + 1]:g}): "
                f"width {self._width:g} -> {self.widths[low]:g}",
            )
        up = self.allowed_index(b, self.hysteresis)
        if up > cur:
            return self._decide(
                self.widths[up],
                f"battery {pct(b)} reached {pct(self.thresholds[up - 1])} + "
                f"{pct(self.hysteresis)} hysteresis: width {self._width:g} -> {self.widths[up]:g}",
            )
        if cur + 1 < len(self.widths):
            need = self.thresholds[cur] + self.hysteresis
            return self._decide(
                self._width, f"battery {pct(b)}: width {self._width:g} (next up at {pct(need)})"
            )
        return self._decide(self._width, f"battery {pct(b)}: widest width {self._width:g}")
