"""The package built the way ROS users build it: `colcon build`, also with --symlink-install, and as a wheel.

Each build goes into a temporary workspace holding a copy of the repository as src/slimseg_ros. Everything
afterwards runs from the install space with the environment `install/setup.sh` sets (the script itself is
sourced), so a package that only works from the source tree or the editable install fails here. The venv's
editable install stays on sys.path, so every import also asserts which file it came from.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("colcon_core", reason="colcon is not installed (requirements.txt has colcon-core)")
pytest.importorskip("colcon_ros", reason="colcon-ros is not installed (requirements.txt has colcon-ros)")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "slimseg_ros"
# what a checkout carries that a build does not need (and that may be large or busy in a work tree)
NOT_COPIED = shutil.ignore_patterns(".git", ".venv*", "build", "install", "log", "runs", "out", "models",
                                    "demo_out", "docs", "scripts", "tests", "__pycache__", "*.egg-info",
                                    ".*_cache")
COLCON = Path(sys.executable).with_name("colcon")


def _copy_source(dest: Path) -> Path:
    """The repository as a package in dest; symlinks (slimseg_ros/training -> ../training) stay links."""
    shutil.copytree(REPO, dest, symlinks=True, ignore=NOT_COPIED)
    return dest


def _workspace(tmp_path: Path, symlink_install: bool) -> Path:
    ws = tmp_path / "ws"
    _copy_source(ws / "src" / PACKAGE)
    cmd = [str(COLCON), "build", "--event-handlers", "console_direct-"]
    if symlink_install:
        cmd.append("--symlink-install")
    out = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=120)
    log = ws / "log" / "latest_build" / PACKAGE / "stdout_stderr.log"
    details = out.stdout[-3000:] + out.stderr[-3000:] + (log.read_text()[-3000:] if log.is_file() else "")
    assert out.returncode == 0 and "1 package finished" in out.stdout, details
    return ws


def _in_install_space(ws: Path, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell command after sourcing install/setup.sh, from outside the workspace and the repository."""
    script = f". {shlex.quote(str(ws / 'install' / 'setup.sh'))} && {command}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ws), "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    return subprocess.run(["sh", "-c", script], cwd=ws.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("symlink_install", [False, True], ids=["install", "symlink-install"])
def test_colcon_build_gives_working_install_space(tmp_path: Path, symlink_install: bool) -> None:
    ws = _workspace(tmp_path, symlink_install)
    scripts = ws / "install" / PACKAGE / "lib" / PACKAGE  # where ros2 run looks (setup.cfg)
    share = ws / "install" / PACKAGE / "share" / PACKAGE
    py = shlex.quote(sys.executable)

    # the environment the setup script gives, and the package resolved through it (not the editable install)
    probe = ("import json, os, slimseg_ros, slimseg_ros.node, slimseg_ros.training.info, "
             "slimseg_ros.engines.export as e\n"
             "from ament_index_python.packages import get_package_share_directory as share\n"
             "print(json.dumps({'pkg': slimseg_ros.__file__, 'export': e.__file__, "
             "'share': share('slimseg_ros'), 'ament': os.environ['AMENT_PREFIX_PATH'], "
             "'pythonpath': os.environ['PYTHONPATH']}))")
    out = _in_install_space(ws, f"{py} -c {shlex.quote(probe)}")
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["ament"].split(":")[0] == str(ws / "install" / PACKAGE)
    assert str(ws / "install" / PACKAGE / "lib") in found["pythonpath"]
    assert Path(found["share"]) == share
    for key in ("pkg", "export"):  # symlink-install: build/ links into src/; install: a copy in install/
        assert Path(found[key]).is_relative_to(ws), (key, found[key])
    if symlink_install:
        assert Path(found["export"]).resolve() == (ws / "src" / PACKAGE / "engines" / "export.py")
    else:
        assert Path(found["export"]).is_relative_to(ws / "install")

    # every console entry point starts
    assert {p.name for p in scripts.iterdir()} == {"slimseg", "slimseg_node"}
    out = _in_install_space(ws, f"{scripts / 'slimseg'} --help")
    assert out.returncode == 0 and "build-engines" in out.stdout, out.stderr[-2000:]
    out = _in_install_space(ws, f"{scripts / 'slimseg_node'} --help")
    assert out.returncode == 0 and "manifest" in out.stdout and "--ros-args" in out.stdout, out.stderr
    # `slimseg info` really runs (training package + torch) and the export subcommand loads
    table = ws / "info.json"
    out = _in_install_space(ws, f"{scripts / 'slimseg'} info --height 64 --width 64 --json {table}")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(table.read_text())
    assert "0.25" in json.dumps(rows) and "Traceback" not in out.stderr
    out = _in_install_space(ws, f"{scripts / 'slimseg'} export --help")
    assert out.returncode == 0 and "--ckpt" in out.stdout, out.stderr[-2000:]

    # launch and config files where `ros2 launch slimseg_ros ...` and the node look for them
    for rel in ("launch/slimseg.launch.py", "config/slimseg.yaml", "config/slimseg.rviz", "package.xml"):
        assert (share / rel).is_file(), rel
    marker = ws / "install" / PACKAGE / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    assert marker.is_file()


@pytest.mark.slow
def test_wheel_holds_the_mapped_packages(tmp_path: Path) -> None:
    """A plain wheel carries training/ and engines/ as slimseg_ros.training/.engines, nothing at top level."""
    src = _copy_source(tmp_path / "src")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
           "-w", str(tmp_path / "dist"), str(src)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("slimseg_ros-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert {PACKAGE} <= tops and not tops & {"training", "engines", "launch", "config"}
    for rel in ("training/info.py", "training/losses/__init__.py", "training/configs/camvid_slimseg.yaml",
                "engines/export.py", "node_entry.py", "demo_frames/classes.json"):
        assert f"{PACKAGE}/{rel}" in names, rel
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    assert {"share/slimseg_ros/launch/slimseg.launch.py", "share/slimseg_ros/config/slimseg.yaml"} <= data
