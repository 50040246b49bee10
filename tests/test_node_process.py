"""The node harness itself (slimseg_ros/node_process.py): how it starts, waits for and stops a process.

Its users (test_node, test_lifecycle, test_bag, the demo and the node bench) exercise the happy path; these
pin the edges: a process that ignores SIGINT is killed and its exit code and log are kept, and a node whose
autostart failed is reported with its state and the reason from its log instead of a bare timeout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from slimseg_ros.errors import SlimsegError
from slimseg_ros.node_process import DOMAIN_RANGE, NodeProcess


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for(text: str, proc: NodeProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log_text():
        assert time.monotonic() < deadline, f"no {text!r} in {proc.log_text()!r}"
        time.sleep(0.05)


def test_params_file_keeps_yaml_types_for_any_namespace(tmp_path: Path) -> None:
    params = {"manifest": "/m.yaml", "width": 1.0, "threads": 2, "reliable_qos": True,
              "battery_thresholds": [0.2, 0.4]}
    proc = NodeProcess(params, tmp_path, prefix="t", ros_args=["-r", "image:=/camera/image_raw"])
    argv = proc.argv()
    assert argv[argv.index("-r") + 1] == f"__ns:={proc.namespace}" and argv[-1] == "image:=/camera/image_raw"
    written = yaml.safe_load(Path(argv[argv.index("--params-file") + 1]).read_text())
    assert written == {"/**/slimseg_node": {"ros__parameters": params}}
    other = NodeProcess(params, tmp_path, prefix="t")
    assert proc.namespace != other.namespace and proc.namespace.startswith("/t_")
    assert DOMAIN_RANGE[0] <= proc.domain_id <= DOMAIN_RANGE[1]
    assert proc.env["ROS_DOMAIN_ID"] == str(proc.domain_id)
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in NodeProcess(
        None, tmp_path, env={"FASTDDS_BUILTIN_TRANSPORTS": None}).env  # None unsets


def test_stop_sends_sigint_and_keeps_the_exit_code_and_log(tmp_path: Path) -> None:
    # Like slimseg_node (slimseg_ros.shutdown), the child installs its SIGINT handler itself: a child of a
    # background job inherits SIGINT ignored, and Python then keeps it ignored.
    code = ("import signal, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\ntry:\n"
            "    print('up', flush=True); time.sleep(60)\nexcept KeyboardInterrupt:\n    print('bye')")
    with NodeProcess(None, tmp_path, command=python(code)) as proc:
        wait_for("up", proc)
        assert proc.alive
        assert proc.stop() == 0
    assert proc.returncode == 0 and not proc.alive and "bye" in proc.log_text()


def test_stop_kills_a_process_that_ignores_sigint(tmp_path: Path) -> None:
    code = ("import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(60)")
    proc = NodeProcess(None, tmp_path, command=python(code)).start()
    wait_for("up", proc)
    start = time.monotonic()
    assert proc.stop(timeout=1.0) == -9  # SIGKILL after the timeout
    assert 1.0 <= time.monotonic() - start < 10.0
    assert proc.log_text().strip() == "up"
    assert proc.stop() == -9  # stopping again changes nothing


@pytest.mark.slow
def test_wait_up_reports_a_failed_autostart_with_state_and_reason(tmp_path: Path) -> None:
    pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    pytest.importorskip("rclpy.lifecycle", reason="rclpy without lifecycle support")
    from slimseg_ros.node_process import NodeClient

    params = {"manifest": str(tmp_path / "nope" / "manifest.yaml"), "backend": "onnxruntime"}
    with NodeProcess(params, tmp_path, prefix="np", env={"OMP_NUM_THREADS": "1"}) as proc, \
            NodeClient(proc) as client:
        with pytest.raises(SlimsegError, match=r"(?s)slimseg_node is unconfigured, expected active.*"
                           r"manifest not found: .*nope/manifest.yaml"):
            client.wait_up("active")
        assert client.wait_up(None) == "unconfigured" and proc.alive  # it stays up, waiting for a fix
        rejected = client.set_parameters({"policy": "turbo", "target_fps": 10.0})  # one request, two values
        assert list(rejected) == ["policy"] and "turbo" in rejected["policy"]
    assert proc.returncode == 0 and "Traceback" not in proc.log_text()
