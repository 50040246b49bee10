"""Package hygiene, as ament_python packages lint themselves: package.xml, setup.py, installed files."""

from __future__ import annotations

import importlib
import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]


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
    assert {"rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "launch_ros"} <= exec_deps
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
    # training/ and engines/ install under the package namespace, nothing generic at top level
    assert kwargs["package_dir"]["slimseg_ros.training"] == "training"
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
