"""The fixed policy: one configured width, for benchmarks and operators who want no automation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slimseg_ros.policies.base import Decision, Observation, WidthPolicy, check_member


class FixedPolicy(WidthPolicy):
    """Always the configured width: for benchmarks and for operators who want no automation."""

    name = "fixed"

    def __init__(self, widths: Iterable[float], width: float | None = None) -> None:
        super().__init__(widths)
        self.fixed_width = self.widths[-1] if width is None else check_member("width", width, self.widths)
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
