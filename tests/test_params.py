"""Parameter validation without ROS: every parameter checked on its own and together, whatever the policy.

Issue 16 #1 and #2: rclpy hands double arrays over as array.array; policy parameters had no ranges unless
their policy was active. The node runs these same checks at configure and on every `ros2 param set`
(tests/test_reliability.py drives them through the real node).
"""

from __future__ import annotations

import array
import math

import pytest

from slimseg_ros import params as P
from slimseg_ros.policy_params import ROWS
from slimseg_ros.visualize import VISUALIZATION_SIZES

DEFAULTS = P.load_defaults()
WIDTHS = [0.25, 0.5, 0.75, 1.0]

# The 14 invalid values an outside client stored under policy:=fixed (issue 16 #2), and a few more.
INVALID = [
    ("fps_window", 0), ("fps_window", -3), ("fps_window", 101),
    ("fps_margin", math.nan), ("fps_margin", -0.1), ("fps_margin", 0.95),
    ("fps_stable_s", math.inf), ("fps_stable_s", -1.0), ("fps_stable_s", math.nan),
    ("fps_ewma_alpha", 0.0), ("fps_ewma_alpha", 1.5), ("fps_probe_frames", 0), ("fps_probe_s", 0.0),
    ("fps_probe_max_s", -1.0),
    ("battery_hysteresis", -0.1), ("battery_hysteresis", 0.6), ("battery_hysteresis", math.nan),
    ("target_fps", 0.0), ("target_fps", 1e9), ("target_fps", math.inf),
    ("battery_thresholds", [0.0, 0.4, 0.6]), ("battery_thresholds", [0.2, 0.4, 1.5]),
    ("charging_stable_s", -1.0), ("width", 0.0), ("width", 1.5), ("max_input_pixels", 0),
    ("threads", -1), ("overlay_alpha", 2.0), ("diagnostics_period_s", 0.0),
    ("visualization_size", "camera"), ("visualization_size", 1),
]


def test_double_arrays_from_rclpy_are_accepted() -> None:
    """Issue 16 #1: battery_thresholds arrives from the parameter service as array.array('d')."""
    value = array.array("d", [0.1, 0.5, 0.9])
    assert P.check_node_param("battery_thresholds", value) == [0.1, 0.5, 0.9]
    with pytest.raises(ValueError, match=r"battery_thresholds = 1.5 is out of range \(0, 1\)"):
        P.check_node_param("battery_thresholds", array.array("d", [0.1, 0.5, 1.5]))


@pytest.mark.parametrize("size", VISUALIZATION_SIZES)
def test_every_visualization_size_is_accepted(size: str) -> None:
    assert P.check_node_param("visualization_size", size) == size


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_every_invalid_value_is_rejected_whatever_the_policy(name: str, value) -> None:
    """Issue 16 #2: a range check per parameter, independent of the active policy."""
    with pytest.raises(ValueError, match=name):
        P.check_node_param(name, value)


@pytest.mark.parametrize("policy", P.POLICIES)
def test_rules_across_parameters_hold_under_every_policy(policy: str) -> None:
    values = {**DEFAULTS, "policy": policy}
    P.check_all(values, WIDTHS)
    with pytest.raises(ValueError, match="strictly ascending"):
        P.check_all({**values, "battery_thresholds": [0.4, 0.2, 0.6]}, WIDTHS)
    with pytest.raises(ValueError, match="could never be regained"):
        P.check_all({**values, "battery_thresholds": [0.2, 0.4, 0.9], "battery_hysteresis": 0.2}, WIDTHS)
    with pytest.raises(ValueError, match="needs 3 values"):
        P.check_all({**values, "battery_thresholds": [0.2, 0.4]}, WIDTHS)
    with pytest.raises(ValueError, match="fps_probe_frames 3 is below fps_window 5"):
        P.check_all({**values, "fps_probe_frames": 3}, WIDTHS)
    with pytest.raises(ValueError, match="width 0.3 is not an available width"):
        P.check_all({**values, "width": 0.3}, WIDTHS)


def test_policy_parameters_come_from_one_table() -> None:
    """Issue 14: the node's specs, policy arguments and YAML defaults all derive from the policy tables."""
    for row in ROWS:
        assert P.SPEC_BY_NAME[row.node].type is row.kind
        assert P.SPEC_BY_NAME[row.node].description == row.description
        assert P.POLICY_ARGS[row.node] == row.arg
        default = list(row.default) if row.kind is list else row.default
        assert DEFAULTS[row.node] == default, f"config/slimseg.yaml {row.node} != the table's default"
