"""The node's parameters: defaults from config/slimseg.yaml, types, descriptions and validation.

Kept apart from the node so the rules (what is a valid value, which values need a restart, how node
parameters map onto a width policy's arguments) read in one place and are testable without ROS.
Defaults are read from the shipped params file so that file stays the single source of defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.backends.registry import NODE_BACKENDS
from slimseg_ros.errors import SlimsegError
from slimseg_ros.manifest import same_width
from slimseg_ros.policy_params import ROW_BY_NODE, ROWS, Bound, check_together, coerce_value
from slimseg_ros.resize import RESIZE_MODES
from slimseg_ros.visualize import VISUALIZATION_SIZES

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


def _policy_specs() -> tuple[ParamSpec, ...]:
    """The width policies' parameters, from their table (slimseg_ros/policy_params.py)."""
    return tuple(ParamSpec(row.node, row.kind, row.description) for row in ROWS)


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "autostart", bool, "configure and activate at start; false: wait for lifecycle transitions",
        read_only=True,
    ),
    ParamSpec("manifest", str, "manifest.yaml (or its folder) written by `slimseg export`", read_only=True),
    ParamSpec("backend", str, f"inference backend: {' | '.join(BACKENDS)}", read_only=True),
    ParamSpec("device", str, "backend device (cpu, cuda, cuda:0); empty = backend default", read_only=True),
    ParamSpec("threads", int, "CPU threads of the onnxruntime backend (0 = one per core)", read_only=True),
    ParamSpec("spin", bool, "onnxruntime's idle threads busy-wait (true) or sleep (false)", read_only=True),
    ParamSpec("policy", str, f"width policy: {' | '.join(POLICIES)}"),
    ParamSpec("width", float, "width for policy fixed; start width of the other policies"),
    *_policy_specs(),
    ParamSpec("compressed", bool, "also subscribe to image/compressed (jpeg/png)", read_only=True),
    ParamSpec(
        "max_input_pixels", int,
        "largest frame accepted (width x height, raw or compressed); a compressed frame's declared size is "
        "checked before it is decoded",
    ),
    ParamSpec(
        "reliable_qos", bool, "input QoS reliable instead of sensor data (best effort)", read_only=True
    ),
    ParamSpec("max_rate_hz", float, "process at most this many frames per second (0 = unlimited)"),
    ParamSpec("resize_mode", str, f"how frames fit the network input: {' | '.join(RESIZE_MODES)}"),
    ParamSpec("labels_at_network_size", bool, "publish labels at the network input size, camera_info scaled"),
    ParamSpec("overlay_alpha", float, "weight of the colour mask in ~/overlay (0..1)"),
    ParamSpec(
        "visualization_size", str,
        f"resolution of ~/color and ~/overlay: {' | '.join(VISUALIZATION_SIZES)} (the network's input or "
        "the frame's)",
    ),
    ParamSpec("diagnostics_period_s", float, "period of /diagnostics (s)", read_only=True),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

# node parameter -> argument of slimseg_ros.policy.make_policy (filtered per policy by policy.PARAMETERS)
POLICY_ARGS: dict[str, str] = {row.node: row.arg for row in ROWS}
# Ranges of the node's own numeric parameters (the policies' live in their table): name -> Bound.
NODE_BOUNDS: dict[str, Bound] = {
    "width": Bound(0.0, 1.0, low_open=True),
    "threads": Bound(0, 1024),
    "max_input_pixels": Bound(1, 2**31 - 1),
    "max_rate_hz": Bound(0.0, 10000.0),
    "overlay_alpha": Bound(0.0, 1.0),
    "diagnostics_period_s": Bound(0.01, 3600.0),
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
    """Convert a value to the parameter's type (ints accepted for floats, rclpy's array.array for lists),
    or ValueError with the reason."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"unknown parameter '{name}'")
    return coerce_value(name, spec.type, value)


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
    """Validate one parameter on its own, whatever the active policy: type, range, choices.

    Rules that span parameters (ascending thresholds, hysteresis vs the top threshold, thresholds vs the
    usable widths) are checked by `check_all` on the merged values.
    """
    value = coerce(name, value)
    if name in ROW_BY_NODE:
        return ROW_BY_NODE[name].check(value)
    choices = {
        "backend": BACKENDS, "policy": POLICIES, "resize_mode": RESIZE_MODES,
        "visualization_size": VISUALIZATION_SIZES,
    }.get(name)
    if choices is not None and value not in choices:
        raise ValueError(f"{name} '{value}' is not one of {', '.join(choices)}")
    if name in NODE_BOUNDS:
        NODE_BOUNDS[name].check(name, value)
    return value


def check_all(values: dict[str, Any], widths: list[float] | None = None) -> None:
    """Rules across parameters, for every policy at once (so a later policy change cannot find them
    broken); with the usable `widths` known, `width` and `battery_thresholds` must also fit them."""
    check_together(values, None if widths is None else len(widths))
    if widths is not None and "width" in values:
        match_width(values["width"], widths)


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
