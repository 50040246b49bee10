"""Launch file, params file and rviz config: arguments, defaults and parameter rules.

launch/launch_ros are not installable as wheels, so the test that loads the launch description is skipped
where they are missing; the argument table, the params file and the validation rules are checked everywhere.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from slimseg_ros import params as P
from slimseg_ros.errors import SlimsegError

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "slimseg.launch.py"
PARAMS_FILE = REPO / "config" / "slimseg.yaml"
RVIZ_FILE = REPO / "config" / "slimseg.rviz"
EXPECTED_ARGS = {
    "image_topic",
    "manifest",
    "backend",
    "policy",
    "target_fps",
    "namespace",
    "params_file",
    "rviz",
}


def _argument_table() -> dict:
    """ARGUMENTS from the launch file's source (a literal), readable without launch installed."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "ARGUMENTS":
            return ast.literal_eval(node.value)
    raise AssertionError("ARGUMENTS table not found in the launch file")


def test_launch_argument_table_has_descriptions_and_choices() -> None:
    table = _argument_table()
    assert EXPECTED_ARGS <= set(table)
    for name, (default, description, choices) in table.items():
        assert isinstance(default, str) and len(description) > 20, name
        if choices is not None:
            assert default in choices, name
    assert set(table["backend"][2]) >= {"auto", "onnxruntime", "torch", "tensorrt"}
    assert set(table["policy"][2]) >= set(P.POLICIES)
    assert table["fastdds_transports"][0] == "LARGE_DATA"


def test_params_file_is_the_single_source_of_defaults() -> None:
    defaults = P.load_defaults(PARAMS_FILE)
    assert set(defaults) == set(P.SPEC_BY_NAME)
    assert defaults["policy"] in P.POLICIES and defaults["backend"] in P.BACKENDS
    assert yaml.safe_load(PARAMS_FILE.read_text())["/**/slimseg_node"]["ros__parameters"]["width"] == 1.0
    for line in PARAMS_FILE.read_text().splitlines():
        if re.match(r"^\s{4}\w+:", line):
            assert "#" in line, f"no comment on: {line}"
            assert len(line) <= 110


@pytest.mark.parametrize(
    "key", ["slimseg_node", "/slimseg_node", "/**", "/**/slimseg_node", "/robot/slimseg_node"]
)
def test_params_file_key_forms(tmp_path: Path, key: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({key: {"ros__parameters": {"policy": "fps", "target_fps": 10}}}))
    assert P.read_params_file(path) == {"policy": "fps", "target_fps": 10.0}


def test_params_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"other_node": {"ros__parameters": {"policy": "fps"}}}))
    with pytest.raises(SlimsegError, match="no parameters for slimseg_node"):
        P.read_params_file(path)
    path.write_text(yaml.safe_dump({"slimseg_node": {"ros__parameters": {"polcy": "fps"}}}))
    with pytest.raises(SlimsegError, match="unknown parameter"):
        P.read_params_file(path)
    path.write_text(yaml.safe_dump({"slimseg_node": {"ros__parameters": {"fps_window": "five"}}}))
    with pytest.raises(SlimsegError, match="integer"):
        P.read_params_file(path)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("policy", "turbo", "not one of"),
        ("backend", "cuda", "not one of"),
        ("target_fps", 0.0, "> 0"),
        ("target_fps", "fast", "number"),
        ("overlay_alpha", -0.1, r"\[0, 1\]"),
        ("max_rate_hz", -1.0, ">= 0"),
        ("fps_window", 2.5, "integer"),
        ("compressed", 1, "bool"),
        ("battery_thresholds", ["a"], "list of numbers"),
    ],
)
def test_invalid_values_are_rejected_with_reason(name: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        P.check_node_param(name, value)


def test_width_and_policy_arguments() -> None:
    widths = [0.25, 0.5, 0.75, 1.0]
    assert P.match_width(0.5000000001, widths) == 0.5
    with pytest.raises(ValueError, match="available: 0.25, 0.5, 0.75, 1"):
        P.match_width(0.3, widths)
    values = P.load_defaults(PARAMS_FILE)
    from slimseg_ros.policy import PARAMETERS, make_policy

    for name in P.POLICIES:
        kwargs = P.policy_kwargs(name, values, 0.5, PARAMETERS[name])
        policy = make_policy(name, widths, **kwargs)
        assert policy.width == 0.5, name
    assert P.policy_kwargs("battery", values, 0.5, PARAMETERS["battery"])["thresholds"] == [0.2, 0.4, 0.6]


def test_rviz_config_shows_input_overlay_and_colour_mask() -> None:
    config = yaml.safe_load(RVIZ_FILE.read_text())
    displays = {d["Name"]: d for d in config["Visualization Manager"]["Displays"]}
    assert {d["Class"] for d in displays.values()} == {"rviz_default_plugins/Image"}
    topics = {d["Topic"]["Value"] for d in displays.values()}
    assert topics == {"/image", "/slimseg_node/overlay", "/slimseg_node/color"}


def test_launch_description_loads() -> None:
    pytest.importorskip(
        "launch_ros", reason="launch/launch_ros are not installable here (no ROS 2 wheels for them)"
    )
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.utilities import perform_substitutions

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("slimseg_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert EXPECTED_ARGS <= set(declared)
    assert all(arg.description for arg in declared.values())
    assert "tensorrt" in declared["backend"].choices
    context = LaunchContext()
    for name, arg in declared.items():
        context.launch_configurations[name] = (
            arg.default_value[0].perform(context) if arg.default_value else ""
        )

    def text(value) -> str:
        """A launch value as the launch system resolves it: a plain string, or a list of substitutions."""
        return value if isinstance(value, str) else perform_substitutions(context, value)

    env = {text(e.name): text(e.value) for e in description.entities if isinstance(e, SetEnvironmentVariable)}
    assert env.get("FASTDDS_BUILTIN_TRANSPORTS") == "LARGE_DATA", env
    context.launch_configurations.update(
        {"params_file": str(PARAMS_FILE), "policy": "fps", "target_fps": "12"}
    )
    node, rviz = module.launch_setup(context)
    parameters = module.node_parameters(str(PARAMS_FILE), {"policy": "fps", "target_fps": "12"})
    assert parameters["policy"] == "fps" and parameters["target_fps"] == 12.0
    assert ("image", "image") in module.remappings("image", "camera_info", "battery_state")
    assert node is not None and rviz is not None
