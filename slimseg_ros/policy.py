"""Width policies: which width to run next, from measured latency and battery level; built here by name.

Pure Python (no ROS, no torch) so the node, the simulator and the tests share one implementation. A policy
is fed one `Observation` per processed frame and answers a `Decision` with a human-readable reason that the
node logs on every switch. Each policy lives in its own module under slimseg_ros/policies/ (fixed, battery,
fps, budget, and their shared base); its parameters are declared once in slimseg_ros/policy_params.py and
validated at construction with `ValueError` messages that the node returns as the reason for rejecting a
parameter change. This module is the registry: POLICIES, PARAMETERS and make_policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slimseg_ros.policies.base import Decision, Observation, WidthPolicy, validate_widths
from slimseg_ros.policies.battery import BatteryPolicy, default_thresholds
from slimseg_ros.policies.budget import BudgetPolicy
from slimseg_ros.policies.fixed import FixedPolicy
from slimseg_ros.policies.fps import FpsPolicy
from slimseg_ros.policy_params import arguments

__all__ = [
    "POLICIES", "PARAMETERS", "BatteryPolicy", "BudgetPolicy", "Decision", "FixedPolicy", "FpsPolicy",
    "Observation", "WidthPolicy", "default_thresholds", "make_policy", "validate_widths",
]

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
