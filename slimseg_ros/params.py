"""The node's parameters: defaults from config/slimseg.yaml, types, descriptions and validation.

Kept apart from the node so the rules (what is a valid value, which values need a restart, how node
parameters map onto a width policy's arguments) read in one place and are testable without ROS.
Defaults are read from the shipped params file so that file stays the single source of defaults.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.backends.registry import NODE_BACKENDS
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import same_width
from slimseg_ros.resize import RESIZE_MODES

NODE_NAME = "slimseg_node"
BACKENDS = NODE_BACKENDS
POLICIES = ("fixed", "battery", "fps", "budget")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its Python type, the help text rclpy shows, and whether it can change at run time.

    `read_only` parameters are read when the lifecycle node configures (backend, input subscriptions): they
    can be set only while the node is unconfigured and take effect at the next configure.
    """

    name: str
    type: type
    description: str
    read_only: bool = False


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "autostart", bool, "configure and activate at start; false: wait for lifecycle transitions",
        read_only=True,
    ),
    ParamSpec("manifest", str, "manifest.yaml (or its folder) written by `slimseg export`", read_only=True),
    ParamSpec("backend", str, f"inference backend: {' | '.join(BACKENDS)}", read_only=True),
    ParamSpec("device", str, "backend device (cpu, cuda, cuda:0); empty = backend default", read_only=True),
    ParamSpec("threads", int, "CPU threads of the onnxruntime backend (0 = its default)", read_only=True),
    ParamSpec("policy", str, f"width policy: {' | '.join(POLICIES)}"),
    ParamSpec("width", float, "width for policy fixed; start width of the other policies"),
    ParamSpec("target_fps", float, "frame-rate target of the fps and budget policies (> 0)"),
    ParamSpec(
        "battery_thresholds", list, "battery fraction each width above the narrowest needs (ascending)"
    ),
    ParamSpec("battery_hysteresis", float, "margin above a threshold before stepping back up"),
    ParamSpec("charging_full_width", bool, "allow the widest width while charging"),
    ParamSpec("fps_window", int, "frames whose median latency must overrun before stepping down"),
    ParamSpec("fps_margin", float, "step up only if predicted latency < budget * (1 - margin)"),
    ParamSpec("fps_stable_s", float, "seconds within budget before trying a wider width"),
    ParamSpec("compressed", bool, "also subscribe to image/compressed (jpeg/png)", read_only=True),
    ParamSpec(
        "reliable_qos", bool, "input QoS reliable instead of sensor data (best effort)", read_only=True
    ),
    ParamSpec("max_rate_hz", float, "process at most this many frames per second (0 = unlimited)"),
    ParamSpec("resize_mode", str, f"how frames fit the network input: {' | '.join(RESIZE_MODES)}"),
    ParamSpec("labels_at_network_size", bool, "publish labels at the network input size, camera_info scaled"),
    ParamSpec("overlay_alpha", float, "weight of the colour mask in ~/overlay (0..1)"),
    ParamSpec("diagnostics_period_s", float, "period of /diagnostics (s)", read_only=True),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

# node parameter -> argument of slimseg_ros.policy.make_policy (filtered per policy by policy.PARAMETERS)
POLICY_ARGS: dict[str, str] = {
    "target_fps": "target_fps",
    "battery_thresholds": "thresholds",
    "battery_hysteresis": "hysteresis",
    "charging_full_width": "charging_full",
    "fps_window": "window",
    "fps_margin": "margin",
    "fps_stable_s": "stable_s",
}


def default_params_file() -> Path:
    """config/slimseg.yaml from the source tree (editable install) or the installed share folder."""
    here = Path(__file__).resolve().parent
    candidates = [
        here.parent / "config" / "slimseg.yaml",
        Path(sys.prefix) / "share/slimseg_ros/config/slimseg.yaml",
    ]
    try:  # a colcon/ament install
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("slimseg_ros")) / "config" / "slimseg.yaml")
    except Exception:  # noqa: BLE001 - ament_index is optional (wheels install has no index)
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise SlimsegError(
        "config/slimseg.yaml (the parameter defaults) was not found in " + ", ".join(map(str, candidates)),
        "reinstall the package (`make setup`) so config/ is installed",
    )


def _node_block_keys(key: str) -> bool:
    """Whether a params-file top-level key addresses this node (plain, absolute, or wildcard forms)."""
    return key in (NODE_NAME, "/**") or key.endswith(f"/{NODE_NAME}")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The node's parameters from a ROS params file, whatever key form addresses it (`slimseg_node`,
    `/**`, `/**/slimseg_node`, `/ns/slimseg_node`), blocks merged in file order and type-checked."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SlimsegError(f"cannot read params file {path}: {exc}", "pass a readable YAML file") from exc
    if not isinstance(data, dict):
        raise SlimsegError(
            f"params file {path} is not a mapping", f"it needs `{NODE_NAME}: ros__parameters:`"
        )
    values: dict[str, Any] = {}
    for key, block in data.items():
        if (
            _node_block_keys(str(key))
            and isinstance(block, dict)
            and isinstance(block.get("ros__parameters"), dict)
        ):
            values.update(block["ros__parameters"])
    if not values:
        raise SlimsegError(
            f"params file {path} has no parameters for {NODE_NAME}",
            f"use `{NODE_NAME}:` or `/**/{NODE_NAME}:` with a `ros__parameters:` block",
        )
    unknown = sorted(set(values) - set(SPEC_BY_NAME) - {"use_sim_time"})
    if unknown:
        raise SlimsegError(f"{path}: unknown parameter(s) {unknown}", f"known: {', '.join(SPEC_BY_NAME)}")
    try:
        return {name: coerce(name, v) if name in SPEC_BY_NAME else v for name, v in values.items()}
    except ValueError as exc:
        raise SlimsegError(f"{path}: {exc}", "fix the value's type") from exc


def load_defaults(path: str | Path | None = None) -> dict[str, Any]:
    """Parameter defaults from the params file, checked against SPECS so the two cannot drift apart."""
    path = Path(path) if path is not None else default_params_file()
    values = read_params_file(path)
    missing = sorted(set(SPEC_BY_NAME) - set(values))
    if missing:
        raise SlimsegError(
            f"{path} lacks defaults for {missing}",
            "keep config/slimseg.yaml and slimseg_ros/params.py in step",
        )
    return {name: values[name] for name in SPEC_BY_NAME}


def coerce(name: str, value: Any) -> Any:
    """Convert a value to the parameter's type (ints accepted for floats), or ValueError with the reason."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"unknown parameter '{name}'")
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if spec.type is list:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise ValueError(f"{name} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if not isinstance(value, spec.type):
        raise ValueError(f"{name} must be a {spec.type.__name__}, got {value!r}")
    return value


def text_overrides(values: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """`values` with launch arguments (text) applied: empty keeps the value, others become the parameter's
    type ("true"/"false" for bools, numbers for floats) or raise ValueError with the reason."""
    out = dict(values)
    for name, text in overrides.items():
        if text == "":
            continue
        kind = SPEC_BY_NAME[name].type
        if kind is bool:
            if text.strip().lower() not in ("true", "false"):
                raise ValueError(f"{name} must be true or false, got {text!r}")
            out[name] = text.strip().lower() == "true"
        elif kind in (int, float):
            try:
                number = float(text) if kind is float else int(text)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {text!r}") from None
            out[name] = coerce(name, number)
        else:
            out[name] = coerce(name, text)
    return out


def check_node_param(name: str, value: Any) -> Any:
    """Validate the parameters the node itself uses (policy arguments are checked by the policy)."""
    value = coerce(name, value)
    if name == "backend" and value not in BACKENDS:
        raise ValueError(f"backend '{value}' is not one of {', '.join(BACKENDS)}")
    if name == "policy" and value not in POLICIES:
        raise ValueError(f"policy '{value}' is not one of {', '.join(POLICIES)}")
    if name == "resize_mode" and value not in RESIZE_MODES:
        raise ValueError(f"resize_mode '{value}' is not one of {', '.join(RESIZE_MODES)}")
    if name == "threads" and value < 0:
        raise ValueError(f"threads must be >= 0 (0 = backend default), got {value}")
    if name == "target_fps" and not (math.isfinite(value) and value > 0):
        raise ValueError(f"target_fps must be > 0, got {value:g}")
    if name == "max_rate_hz" and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"max_rate_hz must be >= 0 (0 = unlimited), got {value:g}")
    if name == "overlay_alpha" and not 0.0 <= value <= 1.0:
        raise ValueError(f"overlay_alpha must be in [0, 1], got {value:g}")
    if name == "diagnostics_period_s" and not (math.isfinite(value) and value > 0):
        raise ValueError(f"diagnostics_period_s must be > 0, got {value:g}")
    return value


def match_width(value: float, widths: list[float]) -> float:
    """The available width equal to `value` (YAML floats may differ in the last bit), else ValueError."""
    for w in widths:
        if same_width(w, value):
            return w
    raise ValueError(
        f"width {value:g} is not an available width; available: {', '.join(f'{w:g}' for w in widths)}"
    )


def policy_kwargs(
    policy: str, values: dict[str, Any], width: float, accepted: tuple[str, ...]
) -> dict[str, Any]:
    """make_policy arguments for `policy` from node parameters; `width` is the fixed or start width."""
    kwargs: dict[str, Any] = {}
    for param, arg in POLICY_ARGS.items():
        if arg in accepted:
            kwargs[arg] = values[param]
    if "width" in accepted and policy == "fixed":
        kwargs["width"] = width
    if "initial_width" in accepted:
        kwargs["initial_width"] = width
    return kwargs
