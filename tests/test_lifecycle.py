"""slimseg_node as a managed (lifecycle) node, driven through its real lifecycle services with real rclpy.

A client node calls `~/change_state` and `~/get_state` of node processes started with autostart:=false, as
nav2_lifecycle_manager or `ros2 lifecycle set` would; nothing is mocked. One process walks the whole state
machine (failed configures, configure after fixing the parameter, activate, deactivate/activate while frames
flow, cleanup, configure again, shutdown from active); two more shut down from unconfigured and inactive.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
pytest.importorskip("rclpy.lifecycle", reason="rclpy without lifecycle support (ros-rcl-lifecycle)")
pytest.importorskip("cv2")

from lifecycle_msgs.msg import Transition  # noqa: E402

from slimseg_ros.node_process import NodeClient, NodeProcess  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from node_graph import Harness, wait_until  # noqa: E402

BOOT_S = 90.0  # node start-up and configure (4 ONNX sessions) on a loaded 2-core machine
FLOW_PERIOD_S = 0.2  # frames while transitions happen: 5 Hz, well under one inference per frame here


class Lifecycle:
    """One node process, its lifecycle services (through the runtime's client) and its topics (Harness)."""

    def __init__(self, proc: NodeProcess, client: NodeClient) -> None:
        self.proc, self.client = proc, client
        self.harness = Harness(client)
        self.log = proc.log_path
        self.name = proc.full_name

    def state(self) -> str:
        return self.client.state(timeout=BOOT_S)

    def transition(self, transition: int | str) -> bool:
        """Request a transition by id or label; True when the node reports success."""
        return self.client.change_state(transition, timeout=BOOT_S)

    def text(self) -> str:
        return self.proc.log_text()

    def stop(self) -> None:
        self.proc.stop(timeout=15)
        self.client.close()


@pytest.fixture(scope="module")
def corrupt_manifest(manifest: Path, tmp_path_factory) -> Path:
    """A copy of the export whose every ONNX file is garbage, with checksums updated to match: the manifest
    is consistent, so it is onnxruntime itself that refuses each model."""
    folder = tmp_path_factory.mktemp("corrupt_export")
    shutil.copytree(manifest.parent, folder, dirs_exist_ok=True)
    data = yaml.safe_load((folder / "manifest.yaml").read_text())
    for entry in data["widths"]:
        garbage = bytes(random.Random(entry["width"]).randbytes(4096))
        (folder / entry["onnx"]["file"]).write_bytes(garbage)
        entry["onnx"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (folder / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "manifest.yaml"


def start_node(tmp: Path, params: dict) -> Lifecycle:
    """A slimseg_node process in its own domain and namespace, started as launch would, and its client."""
    values = {"backend": "onnxruntime", "reliable_qos": True, "diagnostics_period_s": 0.2, **params}
    proc = NodeProcess(values, tmp, prefix="lc", env={"OMP_NUM_THREADS": "1"}).start()
    return Lifecycle(proc, NodeClient(proc, name="lifecycle_test"))


@pytest.fixture(scope="module")
def unreadable_manifests(tmp_path_factory) -> tuple[Path, Path]:
    """A binary file and a deeply nested YAML document, each named manifest.yaml (issue 16, defect 3)."""
    tmp = tmp_path_factory.mktemp("unreadable")
    binary, nested = tmp / "binary" / "manifest.yaml", tmp / "nested" / "manifest.yaml"
    binary.parent.mkdir()
    nested.parent.mkdir()
    binary.write_bytes(bytes(range(256)) * 8)
    nested.write_text("[" * 100_000 + "]" * 100_000)
    return binary, nested


@pytest.fixture(scope="module")
def managed(tmp_path_factory, frames):
    """One node process with autostart:=false and a manifest path that does not exist."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    lc = start_node(tmp, {"autostart": False, "manifest": str(tmp / "missing" / "manifest.yaml")})
    try:
        yield lc
    finally:
        lc.stop()


def diag_int(harness: Harness, key: str) -> int:
    return int(harness.diag.get(key, "0"))


def accounted(diag: dict[str, str]) -> int:
    """Frames the node says where they went; equals frames_received when every frame is accounted for."""
    keys = ("frames_processed", "drops_superseded", "drops_invalid", "drops_failed", "frames_paused",
            "frames_throttled", "frames_inactive")
    return sum(int(diag[k]) for k in keys)


@pytest.mark.slow
def test_starts_unconfigured_with_nothing_loaded(managed) -> None:
    assert managed.state() == "unconfigured"
    harness = managed.harness
    time.sleep(1.0)  # discovery: a subscription or publisher would be matched by now
    assert harness.pub_image.get_subscription_count() == 0
    assert harness.node.count_publishers(f"{managed.name}/labels") == 0
    assert "configured:" not in managed.text() and managed.proc.poll() is None


@pytest.mark.slow
def test_failed_configure_reports_the_reason_and_stays_unconfigured(
    managed, manifest, corrupt_manifest, unreadable_manifests
) -> None:
    """Bad manifest, corrupt models, missing backend: each configure fails with its reason in the log, the
    node stays unconfigured and alive, and its configure-time parameters can still be set."""
    harness = managed.harness
    binary, nested = (str(p) for p in unreadable_manifests)
    cases = [
        ({}, "manifest not found: .*missing/manifest.yaml"),
        ({"manifest": binary}, "binary/manifest.yaml is unreadable: UnicodeDecodeError"),
        ({"manifest": nested}, "nested/manifest.yaml is unreadable: RecursionError"),
        ({"manifest": str(corrupt_manifest)}, "no usable width in .*onnxruntime could not load it"),
        ({"manifest": str(manifest), "backend": "tensorrt"}, "configure failed: .*(tensorrt|TensorRT)"),
    ]
    for params, reason in cases:
        for name, value in params.items():
            ok, why = harness.set_param(name, value)
            assert ok, why  # configure-time parameters are writable while unconfigured
        before = managed.text().count("configure failed")
        assert not managed.transition(Transition.TRANSITION_CONFIGURE), params
        assert managed.state() == "unconfigured"
        wait_until(lambda b=before: managed.text().count("configure failed") > b, 10, "the failure logged")
        line = "configure failed" + managed.text().split("configure failed")[-1].splitlines()[0]
        assert re.search(reason, line), line
        assert managed.proc.poll() is None and "Traceback" not in managed.text()
    assert harness.node.count_publishers(f"{managed.name}/labels") == 0  # nothing left behind


@pytest.mark.slow
def test_configure_after_fixing_the_parameter_then_inactive_frames_are_counted(
    managed, manifest, frames
) -> None:
    harness = managed.harness
    ok, why = harness.set_param("backend", "onnxruntime")
    assert ok, why
    assert managed.transition("configure")
    assert managed.state() == "inactive"
    assert "configured: onnxruntime-cpu: widths [0.25, 0.5, 0.75, 1]" in managed.text()
    ok, why = harness.set_param("manifest", str(manifest))
    assert not ok and "read-only while configured" in why  # read at configure: only while unconfigured
    ok, why = harness.set_param("width", 0.5)  # run-time parameters stay writable
    assert ok, why
    ok, why = harness.set_param("width", 1.0)
    assert ok, why
    wait_until(lambda: harness.pub_image.get_subscription_count() > 0, 10, "the input subscription")
    wait_until(lambda: harness.diag.get("lifecycle_state") == "inactive", 10, "diagnostics while inactive")
    keys = []
    for i in range(3):  # camera-paced: the input QoS keeps the newest frame only, a burst would merge
        keys.append(harness.send(frames[i]))
        time.sleep(FLOW_PERIOD_S)
    wait_until(lambda: diag_int(harness, "frames_inactive") == 3, 10, "3 frames counted as inactive")
    time.sleep(0.5)
    diag = harness.diag
    assert not any(k in harness.labels for k in keys)
    assert int(diag["frames_received"]) == 3 and int(diag["frames_processed"]) == 0
    assert accounted(diag) == 3 and diag["drops"] == "0"
    assert harness.class_info is None  # latched outputs are published on activation only


@pytest.mark.slow
def test_activate_runs_inference_and_latches_class_info(managed, frames, manifest) -> None:
    from slimseg_ros.backends import create_backend

    harness = managed.harness
    assert managed.transition(Transition.TRANSITION_ACTIVATE)
    assert managed.state() == "active"
    wait_until(lambda: harness.class_info is not None and harness.widths, 10, "latched class_info and width")
    assert harness.class_info["widths"] == [0.25, 0.5, 0.75, 1.0] and harness.latest_width() == 1.0
    msg = harness.wait_labels(harness.send(frames[0]))
    with create_backend("onnxruntime", manifest) as backend:
        want = backend.infer(frames[0], 1.0)
    assert np.array_equal(np.frombuffer(msg.data, np.uint8).reshape(360, 480), want)
    wait_until(lambda: harness.diag.get("lifecycle_state") == "active", 10, "diagnostics: active")


@pytest.mark.slow
def test_deactivate_and_activate_while_frames_flow_account_for_every_frame(managed, frames) -> None:
    """Frames flow at 5 Hz through deactivate/activate twice. The node receives every frame, each lands in
    exactly one bucket (processed, inactive, or superseded by a newer one); none sent while inactive gets
    labels."""
    harness = managed.harness
    # a settled start: every frame sent since configure (harness.sequence) is received and accounted for
    wait_until(
        lambda: diag_int(harness, "frames_received") == harness.sequence == accounted(harness.diag),
        10,
        "settled counters",
    )
    start = dict(harness.diag)
    sent: list[tuple[tuple[int, int], float]] = []
    stop = threading.Event()

    def flow() -> None:
        i = 0
        while not stop.is_set():
            sent.append((harness.send(frames[i % 3]), time.monotonic()))
            i += 1
            stop.wait(FLOW_PERIOD_S)

    inactive_windows = []
    flower = threading.Thread(target=flow, daemon=True)
    flower.start()
    try:
        for _ in range(2):
            time.sleep(1.5)
            assert managed.transition(Transition.TRANSITION_DEACTIVATE)
            off = time.monotonic()  # frames sent from now on reach the node after it became inactive
            assert managed.state() == "inactive"
            time.sleep(2.0)
            inactive_windows.append((off, time.monotonic() - 0.6))  # margin: a frame may trail a request
            assert managed.transition(Transition.TRANSITION_ACTIVATE)
            assert managed.state() == "active"
        time.sleep(1.5)
    finally:
        stop.set()
        flower.join(5)
    total = harness.sequence  # every frame sent to this node since it was configured
    assert total == int(start["frames_received"]) + len(sent)
    wait_until(lambda: diag_int(harness, "frames_received") == total, 20, f"{total} frames received")
    wait_until(lambda: accounted(harness.diag) == total, 20, "every received frame accounted for")
    diag = dict(harness.diag)
    buckets = ("frames_inactive", "frames_processed", "drops_superseded")
    new = {k: int(diag[k]) - int(start[k]) for k in buckets}
    assert sum(new.values()) == len(sent), (new, len(sent))
    new_inactive, new_processed = new["frames_inactive"], new["frames_processed"]
    assert diag["drops_invalid"] == diag["drops_failed"] == diag["frames_paused"] == "0"
    in_windows = [k for k, t in sent if any(a <= t <= b for a, b in inactive_windows)]
    assert len(in_windows) >= 10 and new_inactive >= len(in_windows), (new_inactive, len(in_windows))
    assert new_processed > 10
    # processed counts a frame once its labels are published; delivery to this test is the transport's.
    # ~/labels keeps the last 10 samples (reliable, qos.LABELS_QOS: 2 s at this rate), so a transient loss on
    # a loaded machine is repaired; "nearly all" leaves room for one longer than that. "None for frames sent
    # while inactive" is exact.
    flowed = {k for k, _ in sent}
    wait_until(lambda: len(flowed & harness.labels.keys()) >= 0.9 * new_processed, 10, "the labels")
    assert len(flowed & harness.labels.keys()) <= new_processed
    assert not [k for k in in_windows if k in harness.labels], "labels for frames sent while inactive"
    assert "Traceback" not in managed.text()


@pytest.mark.slow
def test_cleanup_frees_and_configure_activate_again(managed, frames, manifest) -> None:
    harness = managed.harness
    assert managed.transition("deactivate")
    assert managed.transition(Transition.TRANSITION_CLEANUP)
    assert managed.state() == "unconfigured"
    assert "unconfigured: backend sessions freed" in managed.text()
    wait_until(lambda: harness.pub_image.get_subscription_count() == 0, 10, "the input subscription gone")
    wait_until(lambda: harness.node.count_publishers(f"{managed.name}/labels") == 0, 10, "~/labels gone")
    ok, why = harness.set_param("manifest", str(manifest))  # writable again
    assert ok, why
    assert managed.transition("configure") and managed.transition("activate")
    harness.wait_labels(harness.send(frames[1]))
    wait_until(lambda: diag_int(harness, "frames_processed") == 1, 10, "counters restarted at configure")


@pytest.mark.slow
def test_shutdown_from_active_exits_cleanly(managed) -> None:
    assert managed.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert managed.proc.wait(20) == 0
    text = managed.text()
    assert "finalized (shutdown from active)" in text and "Traceback" not in text


@pytest.mark.slow
def test_shutdown_from_unconfigured_and_inactive(tmp_path, manifest) -> None:
    """A failed autostart leaves the node unconfigured and alive (the hint says how to go on); shutdown
    works from there, and from inactive."""
    failed = start_node(tmp_path, {"autostart": True, "manifest": str(tmp_path / "nope.yaml")})
    inactive = start_node(tmp_path, {"autostart": False, "manifest": str(manifest)})
    try:
        assert failed.state() == "unconfigured" and failed.proc.poll() is None
        assert "autostart: configure failed" in failed.text() and "ros2 lifecycle set" in failed.text()
        assert inactive.transition(Transition.TRANSITION_CONFIGURE)
        assert inactive.state() == "inactive"
        assert failed.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert inactive.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN)
        assert failed.proc.wait(20) == 0 and inactive.proc.wait(20) == 0
        assert "finalized (shutdown from unconfigured)" in failed.text()
        assert "finalized (shutdown from inactive)" in inactive.text()
        for lc in (failed, inactive):
            assert "Traceback" not in lc.text()
    finally:
        failed.stop()
        inactive.stop()

