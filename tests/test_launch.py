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
from slimseg_ros import rviz_config as R
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
    "autostart",
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
    assert table["autostart"][0] == "true" and table["autostart"][2] == ["true", "false"]
    assert set(P.text_overrides({}, {"autostart": "false"})) <= set(P.SPEC_BY_NAME)


def test_launch_overrides_take_the_parameter_type() -> None:
    """Launch arguments are text; the node gets typed values, an invalid one fails with its reason."""
    values = P.load_defaults(PARAMS_FILE)
    out = P.text_overrides(values, {"autostart": "false", "target_fps": "12", "policy": "fps", "backend": ""})
    assert out["autostart"] is False and out["target_fps"] == 12.0 and out["policy"] == "fps"
    assert out["backend"] == values["backend"] and values["autostart"] is True  # input not modified
    assert P.text_overrides(values, {"autostart": "True"})["autostart"] is True
    with pytest.raises(ValueError, match="autostart must be true or false"):
        P.text_overrides(values, {"autostart": "yes"})
    with pytest.raises(ValueError, match="target_fps must be a number"):
        P.text_overrides(values, {"target_fps": "fast"})


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
        ("target_fps", 0.0, r"out of range \(0, 1000\]"),
        ("target_fps", "fast", "number"),
        ("overlay_alpha", -0.1, r"\[0, 1\]"),
        ("max_rate_hz", -1.0, r"out of range \[0, 10000\]"),
        ("fps_window", 2.5, "integer"),
        ("compressed", 1, "true or false"),
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


def _displays(text: str) -> dict[str, dict]:
    config = yaml.safe_load(text)
    return {d["Name"]: d for d in config["Visualization Manager"]["Displays"]}


def test_rviz_template_shows_input_overlay_and_colour_mask_without_tf() -> None:
    """The template is YAML with one placeholder per panel topic; the Identity transformer means the fixed
    frame needs no TF (only Image displays, which use none)."""
    text = RVIZ_FILE.read_text()
    displays = _displays(text)
    assert {d["Class"] for d in displays.values()} == {"rviz_default_plugins/Image"}
    assert {n: d["Topic"]["Value"] for n, d in displays.items()} == {
        "Input": "${image_topic}",
        "Overlay": "${overlay_topic}",
        "Colour mask": "${color_topic}",
    }
    manager = yaml.safe_load(text)["Visualization Manager"]
    assert manager["Transformation"]["Current"]["Class"] == "rviz_common/Identity"
    assert manager["Global Options"]["Fixed Frame"]


@pytest.mark.parametrize(
    "image_topic, namespace, want",
    [
        ("image", "", ("/image", "/slimseg_node/overlay", "/slimseg_node/color")),
        ("/camera/image_raw", "", ("/camera/image_raw", "/slimseg_node/overlay", "/slimseg_node/color")),
        ("/camera/image_raw", "/robot", ("/camera/image_raw", "/robot/slimseg_node/overlay",
                                         "/robot/slimseg_node/color")),
        ("image", "robot/front/", ("/robot/front/image", "/robot/front/slimseg_node/overlay",
                                   "/robot/front/slimseg_node/color")),
        ("~/in", "/r", ("/r/slimseg_node/in", "/r/slimseg_node/overlay", "/r/slimseg_node/color")),
    ],
)
def test_rviz_config_follows_image_topic_and_namespace(image_topic: str, namespace: str, want: tuple) -> None:
    rendered = R.render_rviz_config(RVIZ_FILE.read_text(), image_topic, namespace)
    displays = _displays(rendered)
    got = tuple(displays[n]["Topic"]["Value"] for n in ("Input", "Overlay", "Colour mask"))
    assert got == want
    assert "${" not in rendered
    # everything but the three topic values is the template's, line for line
    template_lines, rendered_lines = RVIZ_FILE.read_text().splitlines(), rendered.splitlines()
    assert len(rendered_lines) == len(template_lines)
    changed = [(a, b) for a, b in zip(template_lines, rendered_lines, strict=True) if a != b]
    assert len(changed) == 3, changed


@pytest.mark.parametrize(
    "image_topic, namespace, message",
    [
        ("", "", "not a valid ROS name"),
        ("/camera/image raw", "", "not a valid ROS name"),
        ("image: {x}", "", "not a valid ROS name"),
        ("camera//image", "", "not a valid ROS name"),
        ("image", "/ro bot", "not a valid ROS name"),
        ("image", "~/x", "cannot be private"),
        ("9lives", "", "not a valid ROS name"),
    ],
)
def test_rviz_config_rejects_invalid_names(image_topic: str, namespace: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        R.render_rviz_config(RVIZ_FILE.read_text(), image_topic, namespace)


def test_rviz_template_placeholders_must_match() -> None:
    """A template edited out of step with the renderer fails at launch, not as an empty rviz panel."""
    with pytest.raises(ValueError, match="placeholders"):
        R.render_rviz_config("Value: ${image_topic}\n", "image")
    with pytest.raises(ValueError, match="placeholders"):
        R.render_rviz_config(RVIZ_FILE.read_text() + "x: ${camera_topic}\n", "image")


def test_rviz_config_written_to_a_file_and_by_the_cli(tmp_path: Path, capsys) -> None:
    path = R.write_rviz_config(RVIZ_FILE, "/cam/image", "/bot", out_dir=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".rviz"
    assert _displays(path.read_text())["Overlay"]["Topic"]["Value"] == "/bot/slimseg_node/overlay"
    out = tmp_path / "cli.rviz"
    assert R.main(["--image-topic", "/cam/image", "--namespace", "/bot", "-o", str(out)]) == 0
    assert out.read_text() == path.read_text()
    assert R.main(["--image-topic", "bad topic"]) == 2
    assert "not a valid ROS name" in capsys.readouterr().err


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
    (node,) = module.launch_setup(context)  # rviz false by default: the node alone
    overrides = {"policy": "fps", "target_fps": "12", "autostart": ""}
    parameters = module.node_parameters(str(PARAMS_FILE), overrides)
    assert parameters["policy"] == "fps" and parameters["target_fps"] == 12.0
    assert parameters["autostart"] is True
    assert ("image", "image") in module.remappings("image", "camera_info", "battery_state")
    context.launch_configurations.update(
        {"rviz": "true", "image_topic": "/camera/image_raw", "namespace": "/robot", "autostart": "false"}
    )
    node, rviz = module.launch_setup(context)
    assert node is not None and rviz is not None
    rendered = module.rviz_config("/camera/image_raw", "/robot")
    assert _displays(Path(rendered).read_text())["Input"]["Topic"]["Value"] == "/camera/image_raw"


def test_launch_arguments_agree_with_the_parameter_tables() -> None:
    """Issue 14: launch keeps a literal table (readable without launch installed), so this test holds it to
    the one definition of each name: policy and backend choices, and the policy parameters' descriptions."""
    from slimseg_ros.policy_params import ROW_BY_NODE

    table = _argument_table()
    assert table["policy"][2] == ["", *P.POLICIES]
    assert table["backend"][2] == ["", *P.BACKENDS]
    for name, (_, description, _) in table.items():
        if name in ROW_BY_NODE:
            assert description.startswith(ROW_BY_NODE[name].description), name
