"""The width policies' parameters: one frozen dataclass per policy, the single table of their names.

Each field says once its node parameter name, default, type, range and description. Everything else
derives from these classes: the node's parameter specs and their validation (slimseg_ros/params.py), the
arguments each policy accepts (policy.PARAMETERS), the simulator's options, and the launch arguments; a test
checks config/slimseg.yaml against the defaults here. Pure Python, no ROS: the simulator and tests use it.
"""

from __future__ import annotations

import array
import math
import numbers
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Bound:
    """A closed or open numeric range; `check` says the range in its error."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def check(self, name: str, value: float) -> float:
        """`value` if finite and inside the range, else ValueError naming `name` and the range."""
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        if not math.isfinite(value) or too_low or too_high:
            lb, hb = "(" if self.low_open else "[", ")" if self.high_open else "]"
            raise ValueError(f"{name} = {value:g} is out of range {lb}{self.low:g}, {self.high:g}{hb}")
        return value


def tunable(default: Any, node: str, kind: type, description: str, bound: Bound | None = None) -> Any:
    """A policy parameter field: default, node parameter name, type (float/int/bool/list) and range."""
    meta = {"node": node, "kind": kind, "description": description, "bound": bound}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def coerce_value(name: str, kind: type, value: Any) -> Any:
    """`value` as `kind` (ints accepted for floats, numpy scalars too, any number sequence for lists,
    rclpy's array.array included), or ValueError with the reason."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if kind is list:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, array.array)):
            raise ValueError(f"{name} must be a list of numbers, got {value!r}")
        items = list(value)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{name} must be a list of numbers, got {items!r}")
        return [float(v) for v in items]
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a {kind.__name__}, got {value!r}")
    return value


class _Params:
    """Coerces and range-checks every field at construction (frozen: set through object.__setattr__)."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            meta = f.metadata
            value = coerce_value(meta["node"], meta["kind"], getattr(self, f.name))
            if meta["bound"] is not None:
                items = value if meta["kind"] is list else [value]
                for v in items:
                    meta["bound"].check(meta["node"], v)
            object.__setattr__(self, f.name, tuple(value) if meta["kind"] is list else value)
        self._check_together()

    def _check_together(self) -> None:
        """Rules that involve more than one field (none by default)."""


@dataclass(frozen=True)
class BatteryParams(_Params):
    """Battery policy: the level picks the width, down at once, up with hysteresis or a stable charge."""

    thresholds: tuple[float, ...] = tunable(
        (0.2, 0.4, 0.6), "battery_thresholds", list,
        "battery fraction each width above the narrowest needs (ascending, one per width above it)",
        Bound(0.0, 1.0, low_open=True, high_open=True),
    )
    hysteresis: float = tunable(
        0.05, "battery_hysteresis", float, "battery must exceed threshold + this to step back up",
        Bound(0.0, 0.5, high_open=True),
    )
    charging_full: bool = tunable(True, "charging_full_width", bool, "allow the widest width while charging")
    charging_stable_s: float = tunable(
        5.0, "charging_stable_s", float,
        "seconds charging must be reported without a break before it allows the widest width",
        Bound(0.0, 3600.0),
    )

    def _check_together(self) -> None:
        t = self.thresholds
        if any(b <= a for a, b in zip(t, t[1:], strict=False)):
            raise ValueError(f"battery_thresholds must be strictly ascending, got {list(t)}")
        if t and t[-1] + self.hysteresis > 1.0:
            raise ValueError(
                f"battery_hysteresis {self.hysteresis:g} with top threshold {t[-1]:g} exceeds a full "
                "battery: the widest width could never be regained; lower one of them"
            )


@dataclass(frozen=True)
class FpsParams(_Params):
    """Fps policy: closed loop on measured latency against the frame budget 1 / target_fps."""

    target_fps: float = tunable(
        15.0, "target_fps", float, "frame-rate target of the fps and budget policies",
        Bound(0.0, 1000.0, low_open=True),
    )
    window: int = tunable(
        5, "fps_window", int, "frames whose median (and the estimate) must overrun the budget to step down",
        Bound(1, 100),
    )
    margin: float = tunable(
        0.15, "fps_margin", float, "step up only if the wider width is predicted under budget * (1 - margin)",
        Bound(0.0, 0.9),
    )
    stable_s: float = tunable(
        5.0, "fps_stable_s", float, "seconds within budget before trying a wider width", Bound(0.0, 3600.0)
    )
    ewma_alpha: float = tunable(
        0.05, "fps_ewma_alpha", float,
        "weight of each frame in the latency estimate (EWMA); smaller: steadier under noise, slower to react",
        Bound(0.0, 1.0, low_open=True),
    )
    probe_frames: int = tunable(
        30, "fps_probe_frames", int, "frames a step up is judged on before it is kept", Bound(1, 1000)
    )
    probe_s: float = tunable(
        30.0, "fps_probe_s", float,
        "seconds within budget before probing a wider width not predicted to fit (or one that failed)",
        Bound(0.0, 3600.0, low_open=True),
    )
    probe_max_s: float = tunable(
        480.0, "fps_probe_max_s", float,
        "longest wait before probing a width again; each failed try doubles the wait up to this",
        Bound(0.0, 86400.0, low_open=True),
    )

    def _check_together(self) -> None:
        if self.probe_frames < self.window:
            raise ValueError(
                f"fps_probe_frames {self.probe_frames} is below fps_window {self.window}: a step up must be "
                "judged on at least the frames an overrun is"
            )
        if self.probe_max_s < self.probe_s:
            raise ValueError(f"fps_probe_max_s {self.probe_max_s:g} is below fps_probe_s {self.probe_s:g}")


# policy name -> the parameter classes it takes (budget: both; fixed only uses the node's `width`)
POLICY_CLASSES: dict[str, tuple[type[_Params], ...]] = {
    "fixed": (),
    "battery": (BatteryParams,),
    "fps": (FpsParams,),
    "budget": (BatteryParams, FpsParams),
}
PARAM_CLASSES: tuple[type[_Params], ...] = (BatteryParams, FpsParams)


@dataclass(frozen=True)
class Row:
    """One policy parameter, flattened for the node and the tools: node name, argument, default, rules."""

    node: str
    arg: str
    owner: type
    kind: type
    default: Any
    description: str
    bound: Bound | None

    def check(self, value: Any) -> Any:
        """The value coerced and range-checked on its own (cross-field rules: `check_together`)."""
        value = coerce_value(self.node, self.kind, value)
        if self.bound is not None:
            for v in value if self.kind is list else [value]:
                self.bound.check(self.node, v)
        return value


def _rows() -> tuple[Row, ...]:
    rows = []
    for cls in PARAM_CLASSES:
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            m = f.metadata
            rows.append(Row(m["node"], f.name, cls, m["kind"], default, m["description"], m["bound"]))
    return tuple(rows)


ROWS: tuple[Row, ...] = _rows()
ROW_BY_NODE: dict[str, Row] = {row.node: row for row in ROWS}


def arguments(policy: str) -> tuple[str, ...]:
    """Constructor arguments the policy takes from this table (the node's and simulator's filter)."""
    return tuple(f.name for cls in POLICY_CLASSES[policy] for f in fields(cls))


def check_together(values: dict[str, Any], n_widths: int | None = None) -> None:
    """Build every parameter class from node values (whatever the active policy), so rules that span
    fields hold for all; with `n_widths`, battery_thresholds must also fit the usable widths."""
    for cls in PARAM_CLASSES:
        cls(**{row.arg: values[row.node] for row in ROWS if row.owner is cls and row.node in values})
    thresholds = values.get("battery_thresholds")
    if n_widths is not None and thresholds is not None and len(thresholds) != n_widths - 1:
        raise ValueError(
            f"battery_thresholds needs {n_widths - 1} values (one per usable width above the narrowest), "
            f"got {len(thresholds)}: {list(thresholds)}"
        )
