"""Start slimseg_node (and optionally rviz2) with the shipped parameters and a large-frame transport.

    ros2 launch slimseg_ros slimseg.launch.py manifest:=/path/to/export/manifest.yaml \
        image_topic:=/camera/image_raw namespace:=/robot policy:=fps target_fps:=15 rviz:=true

Logic lives in module-level functions so a test can import this file and check arguments and defaults.
The node is a lifecycle node: autostart:=true (default) configures and activates it at start; with
autostart:=false it waits unconfigured for a lifecycle manager (nav2_lifecycle_manager, `ros2 lifecycle set`).
rviz: config/slimseg.rviz is a template; its topics are rendered for image_topic and namespace
(slimseg_ros/rviz_config.py) into a temporary file that rviz2 opens.
Transport: Fast DDS (the default RMW) drops most 1920x1080 frames with its default transports;
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (shared memory + TCP for data, UDP only for discovery) carries them.
The variable is set here for the processes this file starts; give the camera driver the same setting.
Other RMWs (see docs/node.md): Cyclone DDS needs larger socket buffers (net.core.rmem_max and
CYCLONEDDS_URI SocketReceiveBufferSize) or its iceoryx shared memory; rmw_zenoh carries large frames as is
(shared memory optional). The variable is ignored by RMWs other than Fast DDS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

PACKAGE = "slimseg_ros"

# name -> (default, description, choices or None); a default of "" means "keep the params file's value".
ARGUMENTS: dict[str, tuple[str, str, list[str] | None]] = {
    "image_topic": (
        "image",
        "camera image topic (sensor_msgs/Image); compressed input uses <topic>/compressed",
        None,
    ),
    "camera_info_topic": (
        "camera_info",
        "camera_info topic republished with the labels (optional input)",
        None,
    ),
    "battery_topic": (
        "battery_state",
        "sensor_msgs/BatteryState topic for the battery and budget policies",
        None,
    ),
    "manifest": (
        "",
        "manifest.yaml (or its folder) from `slimseg export`; empty = the params file's value",
        None,
    ),
    "backend": (
        "",
        "inference backend; empty = the params file's value",
        ["", "auto", "tensorrt", "onnxruntime", "torch"],
    ),
    "policy": (
        "",
        "width policy; empty = the params file's value",
        ["", "fixed", "battery", "fps", "budget"],
    ),
    "target_fps": (
        "", "frame-rate target of the fps and budget policies; empty = the params file's value", None
    ),
    "namespace": ("", "namespace of the node (its outputs are <namespace>/slimseg_node/...)", None),
    "autostart": (
        "true",
        "configure and activate the lifecycle node at start; false: it waits unconfigured for a lifecycle "
        "manager (ros2 lifecycle set /<namespace>/slimseg_node configure, then activate)",
        ["true", "false"],
    ),
    "params_file": ("", "parameters YAML; empty = config/slimseg.yaml installed with the package", None),
    "rviz": (
        "false",
        "also start rviz2 showing input, overlay and colour mask (config/slimseg.rviz rendered for "
        "image_topic and namespace)",
        ["true", "false"],
    ),
    "fastdds_transports": (
        "LARGE_DATA",
        "FASTDDS_BUILTIN_TRANSPORTS for the started processes (LARGE_DATA carries camera-sized frames)",
        ["LARGE_DATA", "DEFAULT", "SHM", "UDPv4", "LARGE_DATAv6"],
    ),
}
# launch argument -> node parameter of that name (empty: the params file's value)
OVERRIDES = ("manifest", "backend", "policy", "target_fps", "autostart")


def share_dir() -> Path:
    """The package's installed share folder, or the source tree when run from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - not installed through ament: fall back to the source tree
        return Path(__file__).resolve().parents[1]


def declare_arguments() -> list[DeclareLaunchArgument]:
    """One DeclareLaunchArgument per entry of ARGUMENTS, each with its description (and choices)."""
    declared = []
    for name, (default, description, choices) in ARGUMENTS.items():
        kwargs: dict[str, Any] = {"default_value": default, "description": description}
        if choices is not None:
            kwargs["choices"] = choices
        declared.append(DeclareLaunchArgument(name, **kwargs))
    return declared


def node_parameters(params_file: str | Path, overrides: dict[str, str]) -> dict[str, Any]:
    """The node's parameters: the params file's block (any key form) plus non-empty launch overrides,
    converted from launch's text to the parameter's type (a bad value fails here, with its reason)."""
    from slimseg_ros.params import read_params_file, text_overrides

    return text_overrides(read_params_file(params_file), overrides)


def remappings(image_topic: str, camera_info_topic: str, battery_topic: str) -> list[tuple[str, str]]:
    """Node-relative input names -> the robot's topics (compressed follows image_transport's naming)."""
    return [
        ("image", image_topic),
        ("image/compressed", f"{image_topic.rstrip('/')}/compressed"),
        ("camera_info", camera_info_topic),
        ("battery_state", battery_topic),
    ]


def rviz_config(image_topic: str, namespace: str) -> str:
    """config/slimseg.rviz rendered for this launch's topics, written to a temporary file: its path."""
    from slimseg_ros.rviz_config import write_rviz_config

    return str(write_rviz_config(share_dir() / "config" / "slimseg.rviz", image_topic, namespace))


def launch_setup(context: LaunchContext) -> list[Node]:
    """Resolve the arguments and build the node action, and rviz2's when rviz:=true."""
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = arg["params_file"] or str(share_dir() / "config" / "slimseg.yaml")
    parameters = node_parameters(params_file, {name: arg[name] for name in OVERRIDES})
    node = Node(
        package=PACKAGE,
        executable="slimseg_node",
        name="slimseg_node",
        namespace=arg["namespace"],
        parameters=[parameters],
        remappings=remappings(arg["image_topic"], arg["camera_info_topic"], arg["battery_topic"]),
        output="screen",
        emulate_tty=True,
    )
    if arg["rviz"] != "true":
        return [node]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="slimseg_rviz",
        arguments=["-d", rviz_config(arg["image_topic"], arg["namespace"])],
        output="screen",
    )
    return [node, rviz]


def generate_launch_description() -> LaunchDescription:
    """Transport setting first (it must be in the environment before any process starts), then the nodes."""
    return LaunchDescription(
        [
            *declare_arguments(),
            SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", LaunchConfiguration("fastdds_transports")),
            OpaqueFunction(function=launch_setup),
        ]
    )
