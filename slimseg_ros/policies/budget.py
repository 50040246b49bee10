"""The budget policy: the narrower of battery and fps; battery caps the width, fps works below the cap."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slimseg_ros.policies.base import Decision, Observation, WidthPolicy
from slimseg_ros.policies.battery import BatteryPolicy
from slimseg_ros.policies.fps import FpsPolicy
from slimseg_ros.policy_params import arguments


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
