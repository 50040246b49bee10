"""Package hygiene, as ament_python packages lint themselves: package.xml, setup.py, installed files."""

from __future__ import annotations

import importlib
import re
import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest import mock

from slimseg_ros.node_entry import ROS_MODULES

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ONLY = ("numpy", "opencv-python-headless", "pyyaml", "onnxruntime")


def _setup_kwargs() -> dict:
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return setup.call_args.kwargs


def test_package_xml_is_format_3_and_matches_setup_py() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    kwargs = _setup_kwargs()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == kwargs["name"] == "slimseg_ros"
    assert root.findtext("version") == kwargs["version"]
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    # exactly what the node (every ROS package it imports) and its launch file need on a robot
    assert set(ROS_MODULES) | {"launch", "launch_ros", "python3-numpy", "python3-opencv", "python3-yaml"} \
        == exec_deps
    assert not {"rviz2", "cv_bridge", "vision_msgs"} & exec_deps  # optional: a headless robot stays headless
    # no ament lint tests exist, so none are promised; pytest is what `colcon test` runs
    assert [e.text for e in root.findall("test_depend")] == ["python3-pytest"]
    for tag in ("description", "maintainer", "license"):
        assert (root.findtext(tag) or "").strip(), tag


def test_installed_files_exist_and_resource_marker() -> None:
    kwargs = _setup_kwargs()
    assert (ROOT / "resource" / "slimseg_ros").is_file()
    installed = {dest: files for dest, files in kwargs["data_files"]}
    assert "launch/slimseg.launch.py" in installed["share/slimseg_ros/launch"]
    assert {"config/slimseg.yaml", "config/slimseg.rviz"} <= set(installed["share/slimseg_ros/config"])
    for files in installed.values():
        for f in files:
            assert (ROOT / f).is_file(), f
    # training/ and engines/ are reached through committed relative symlinks, so every install mode (colcon,
    # colcon --symlink-install, pip -e, wheel) sees one plain package tree; nothing generic at top level
    assert "package_dir" not in kwargs
    for top in ("training", "engines"):
        link = ROOT / "slimseg_ros" / top
        assert link.is_symlink() and link.readlink() == Path("..", top) and link.resolve() == ROOT / top
    assert {"slimseg_ros", "slimseg_ros.training", "slimseg_ros.training.losses", "slimseg_ros.engines",
            "slimseg_ros.backends"} <= set(kwargs["packages"])
    assert all(p.startswith("slimseg_ros") for p in kwargs["packages"])


def test_console_entries_resolve() -> None:
    for spec in _setup_kwargs()["entry_points"]["console_scripts"]:
        name, target = (s.strip() for s in spec.split("="))
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_runtime_imports_without_torch() -> None:
    """The node, backends base, policies and demo report must load on a robot without PyTorch."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import slimseg_ros.node, slimseg_ros.policy, slimseg_ros.backends, slimseg_ros.demo_report\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _pins(path: Path) -> dict[str, str]:
    """name (lower case) -> pinned version, from a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line} is not pinned"
            pins[name.lower()] = version
    return pins


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_extras_and_requirement_files_agree() -> None:
    """Extras `runtime` and `ros`, requirements-runtime.txt (CI's robot venv) and requirements.txt agree."""
    extras = _setup_kwargs()["extras_require"]
    full, runtime = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-runtime.txt")
    assert _names(extras["runtime"]) == set(RUNTIME_ONLY)
    assert _names(extras["ros"]) == {n for n in full if n.startswith("ros-")}
    assert _names(extras["runtime"]) | _names(extras["ros"]) | {"pytest", "setuptools"} == set(runtime)
    assert {n: full[n] for n in runtime} == runtime  # same versions as the development set
    assert not {"torch", "onnx", "onnxscript", "albumentations", "safetensors"} & set(runtime)


NODE_MAIN = "from slimseg_ros.node_entry import main; sys.exit(main(['--ros-args', '-p', 'manifest:=m']))"


def _one_line_error(out: subprocess.CompletedProcess, prefix: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_node_without_ros_names_what_to_install() -> None:
    """No site-packages at all (-S): rclpy and the messages are really absent, as on a machine without ROS."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + NODE_MAIN
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    line = _one_line_error(out, "slimseg_node: error: not installed: rclpy, sensor_msgs")
    assert "slimseg_ros[ros]" in line and "setup.bash" in line


def test_node_without_backend_names_what_to_install() -> None:
    code = "import sys\nfor m in ('onnxruntime', 'torch', 'tensorrt'): sys.modules[m] = None\n" + NODE_MAIN
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = _one_line_error(out, "slimseg_node: error: no inference backend is installed")
    assert "pip install onnxruntime" in line


def test_node_help_needs_no_ros() -> None:
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "from slimseg_ros.node_entry import main; sys.exit(main(['--help']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--ros-args" in out.stdout and "target_fps" in out.stdout, out.stderr


def test_demo_without_rclpy_or_backend_stops_before_work(tmp_path: Path) -> None:
    """The demo checks everything up front: one line naming the missing piece, before any export or output."""
    for blocked, expected in ((("rclpy",), "rclpy"), (("onnxruntime",), "onnxruntime")):
        code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None  # not installed\n"
                "from slimseg_ros.cli import main\n"
                f"sys.exit(main(['demo', '--quick', '--out', {str(tmp_path / 'out')!r}]))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        line = _one_line_error(out, "slimseg demo: error: not installed: ")
        assert re.search(rf"(: |; |, ){expected}(,| \()", line), line  # named among the missing, with a hint
        assert not (tmp_path / "out").exists()
