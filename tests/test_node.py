"""slimseg_node end to end with real rclpy: a node process started as launch would, real CamVid frames.

One node process per module (the slowest part is its start-up), a random ROS_DOMAIN_ID and a unique
namespace so parallel test runs on the machine cannot cross-talk. Expected labels come from the same ONNX
Runtime backend run in this process on the same frames.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
cv2 = pytest.importorskip("cv2")

from sensor_msgs.msg import BatteryState, CameraInfo, CompressedImage, Image  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from slimseg_ros.image_codec import SUPPORTED_ENCODINGS  # noqa: E402
from slimseg_ros.manifest import Manifest  # noqa: E402
from slimseg_ros.node import battery_observation, labels_camera_info  # noqa: E402
from slimseg_ros.node_process import NodeClient, NodeProcess  # noqa: E402
from slimseg_ros.resize import fit, labels_to_frame, to_network  # noqa: E402
from slimseg_ros.stats import LatencyWindow, RateMeter  # noqa: E402
from slimseg_ros.visualize import colorize, make_palette, overlay  # noqa: E402
from slimseg_ros.worker import NewestFrameWorker  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from camera_encodings import encode, reference_rgb  # noqa: E402
from node_graph import RELIABLE, Harness, wait_until  # noqa: E402


# --- the node's helpers, alone (fast) -----------------------------------------------------------------
def test_worker_keeps_only_the_newest_item_and_counts_drops() -> None:
    release, started = threading.Event(), threading.Event()
    processed, dropped = [], []

    def process(item: int) -> None:
        started.set()
        if item == 1:
            release.wait(5)
        processed.append(item)

    worker = NewestFrameWorker(process, on_drop=dropped.append)
    assert worker.submit(1)
    assert started.wait(5)
    assert worker.submit(2) and not worker.submit(3) and not worker.submit(4)
    release.set()
    wait_until(worker.idle, 5, "worker idle")
    worker.stop()
    assert processed == [1, 4] and dropped == [2, 3]
    assert not worker.submit(5)


def test_worker_survives_a_failing_item() -> None:
    errors, processed = [], []

    def process(item: str) -> None:
        if item == "bad":
            raise ValueError("broken frame")
        processed.append(item)

    worker = NewestFrameWorker(process, on_error=lambda item, exc: errors.append((item, str(exc))))
    worker.submit("bad")
    wait_until(lambda: errors, 5, "the error callback")
    worker.submit("good")
    wait_until(lambda: processed, 5, "the next item")
    worker.stop()
    assert errors == [("bad", "broken frame")] and processed == ["good"]


def test_worker_drains_on_request_and_reports_a_discarded_item() -> None:
    """wait_idle (a lifecycle deactivate) returns once the item in progress and the waiting one are done;
    stop reports a still-waiting item as dropped, so no frame vanishes uncounted."""
    for drain in (True, False):
        release, started = threading.Event(), threading.Event()
        processed, dropped = [], []

        def process(item: int, release=release, started=started, processed=processed) -> None:
            started.set()
            release.wait(5)
            processed.append(item)

        worker = NewestFrameWorker(process, on_drop=dropped.append)
        worker.submit(1)
        assert started.wait(5)
        assert worker.submit(2)  # 1 in progress, 2 waiting
        if drain:
            assert not worker.wait_idle(0.2)  # still busy: times out
            release.set()
            assert worker.wait_idle(5) and processed == [1, 2] and dropped == []
            worker.stop()
        else:
            worker.stop(timeout=0.0)  # 2 is discarded at once and reported; 1 finishes
            assert dropped == [2]
            release.set()
            wait_until(lambda p=processed: p == [1], 5, "item 1 finished")
            time.sleep(0.1)
            assert processed == [1]


def test_rate_meter_and_latency_window() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(11):
        meter.tick(100.0 + 0.1 * i)
    assert meter.rate(101.0) == pytest.approx(10.0)
    assert meter.rate(110.0) == 0.0
    window = LatencyWindow(size=100)
    assert window.percentiles_ms(50) == [None]
    for ms in range(1, 201):
        window.add(ms / 1000)  # only the last 100 (101..200 ms) are kept
    p50, p95 = window.percentiles_ms(50, 95)
    assert p50 == pytest.approx(150.5) and p95 == pytest.approx(195.05)


def test_battery_observation_nan_is_unknown_and_charging_states() -> None:
    assert battery_observation(BatteryState(percentage=math.nan)) == (None, None)
    charging = BatteryState(percentage=0.5, power_supply_status=BatteryState.POWER_SUPPLY_STATUS_CHARGING)
    assert battery_observation(charging) == (0.5, True)
    draining = BatteryState(percentage=0.25, power_supply_status=BatteryState.POWER_SUPPLY_STATUS_DISCHARGING)
    assert battery_observation(draining) == (0.25, False)


def test_camera_info_scaled_to_label_size() -> None:
    info = CameraInfo(width=480, height=360, k=[400.0, 0, 240, 0, 410, 180, 0, 0, 1])
    info.p = [400.0, 0, 240, 5, 0, 410, 180, 0, 0, 0, 1, 0]
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 48, 36, 240, 180
    scaled = labels_camera_info(info, (360, 480), fit((360, 480), (96, 128), "stretch"))
    sx, sy = 128 / 480, 96 / 360
    assert (scaled.width, scaled.height) == (128, 96)
    assert list(scaled.k) == pytest.approx([400 * sx, 0, 240 * sx, 0, 410 * sy, 180 * sy, 0, 0, 1])
    assert list(scaled.p) == pytest.approx(
        [400 * sx, 0, 240 * sx, 5 * sx, 0, 410 * sy, 180 * sy, 0, 0, 0, 1, 0]
    )
    roi = scaled.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (13, 10, 64, 48)
    assert list(info.k)[0] == 400.0  # the stored message is not modified
    same = labels_camera_info(info, (360, 480))  # labels at the frame's size: camera_info unchanged
    assert list(same.k) == list(info.k) and (same.width, same.height) == (480, 360)
    calibrated_larger = labels_camera_info(CameraInfo(width=960, height=720, k=list(info.k)), (360, 480))
    assert calibrated_larger.k[0] == pytest.approx(200) and calibrated_larger.width == 480


def test_camera_info_for_letterbox_and_crop_at_network_size() -> None:
    """A 16:9 frame on the 4:3 network: letterbox offsets cy by the 12 padding rows, crop offsets cx by
    the 60 cut columns; focal lengths scale by the same factor on both axes (aspect kept)."""
    info = CameraInfo(width=480, height=270, k=[500.0, 0, 250, 0, 500, 130, 0, 0, 1])
    info.p = [500.0, 0, 250, 0, 0, 500, 130, 0, 0, 0, 1, 0]
    boxed = labels_camera_info(info, (270, 480), fit((270, 480), (96, 128), "letterbox"))
    s = 128 / 480
    assert (boxed.width, boxed.height) == (128, 96)
    assert list(boxed.k) == pytest.approx([500 * s, 0, 250 * s, 0, 500 * s, 130 * s + 12, 0, 0, 1])
    assert list(boxed.p)[:7] == pytest.approx([500 * s, 0, 250 * s, 0, 0, 500 * s, 130 * s + 12])
    cropped = labels_camera_info(info, (270, 480), fit((270, 480), (96, 128), "crop"))
    s = 96 / 270
    assert list(cropped.k) == pytest.approx([500 * s, 0, (250 - 60) * s, 0, 500 * s, 130 * s, 0, 0, 1])
    for mode in ("letterbox", "crop"):  # labels at the frame's size: unchanged whatever the mode
        assert list(labels_camera_info(info, (270, 480)).k) == list(info.k), mode


def test_node_module_imports_without_torch() -> None:
    code = (
        "import sys, slimseg_ros.node; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' "
        "or m.startswith('slimseg_ros.training')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- the node process ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(manifest):
    from slimseg_ros.backends import create_backend

    with create_backend("onnxruntime", manifest) as b:
        yield b


@pytest.fixture(scope="module")
def expected(backend, frames) -> Callable[[int, float], np.ndarray]:
    cache: dict[tuple[int, float], np.ndarray] = {}

    def labels(index: int, width: float) -> np.ndarray:
        if (index, width) not in cache:
            cache[(index, width)] = backend.infer(frames[index], width)
        return cache[(index, width)]

    return labels


@pytest.fixture(scope="module")
def running(manifest, tmp_path_factory, frames):
    """The node process and the test harness; yields (harness, process, log path)."""
    params = {
        "manifest": str(manifest), "backend": "onnxruntime", "policy": "fixed", "width": 1.0,
        "reliable_qos": True, "compressed": True, "diagnostics_period_s": 0.2,
        "battery_thresholds": [0.2, 0.4, 0.6], "battery_hysteresis": 0.05,
    }
    tmp = tmp_path_factory.mktemp("node_run")
    env = {"OMP_NUM_THREADS": "1"}
    with NodeProcess(params, tmp, prefix="test", env=env, log=tmp / "node.log") as proc, \
            NodeClient(proc, name="slimseg_test") as client:
        client.wait_up("active")
        harness = Harness(client)
        wait_until(
            lambda: (
                proc.poll() is not None
                or (harness.pub_image.get_subscription_count() > 0 and harness.class_info is not None)
            ),
            60,
            "the node to start",
        )
        assert proc.poll() is None, f"node exited at start-up:\n{proc.log_text()}"
        yield harness, proc, proc.log_path


@pytest.mark.slow
def test_labels_keep_header_and_equal_backend(running, frames, expected, backend) -> None:
    harness, _, _ = running
    info = CameraInfo(width=480, height=360, k=[400.0, 0, 240, 0, 400, 180, 0, 0, 1])
    harness.pub_info.publish(info)
    time.sleep(0.3)
    palette = make_palette(harness.class_info["classes"])
    for index, encoding in [(0, "rgb8"), (1, "bgr8")]:
        key = harness.send(frames[index], encoding)
        msg = harness.wait_labels(key)
        assert msg.header.frame_id == f"camera_{harness.sequence}"
        assert (msg.height, msg.width, msg.encoding, msg.step) == (360, 480, "mono8", 480)
        labels = np.frombuffer(msg.data, np.uint8).reshape(360, 480)
        assert np.array_equal(labels, expected(index, 1.0))
        wait_until(lambda k=key: k in harness.colors and k in harness.infos, 5, "colour mask and camera_info")
        # visualization_size network (the default): the network's own labels, coloured at its input size
        small = backend.infer(cv2.resize(frames[index], (128, 96), interpolation=cv2.INTER_LINEAR), 1.0)
        assert (harness.colors[key].height, harness.colors[key].width) == (96, 128)
        color = np.frombuffer(harness.colors[key].data, np.uint8).reshape(96, 128, 3)
        assert np.array_equal(color, colorize(small, palette))
        assert harness.infos[key].header.frame_id == msg.header.frame_id
        assert list(harness.infos[key].k) == list(info.k)


@pytest.mark.slow
def test_class_metadata_and_latched_width(running) -> None:
    harness, _, _ = running
    info = harness.class_info
    assert [c["name"] for c in info["classes"]][:3] == ["sky", "building", "pole"]
    assert len(info["classes"]) == 11 and info["ignore_index"] == 11
    assert info["widths"] == [0.25, 0.5, 0.75, 1.0]
    assert harness.widths and harness.latest_width() == pytest.approx(1.0)


@pytest.mark.slow
def test_invalid_parameters_are_rejected_with_a_reason(running) -> None:
    harness, _, _ = running
    ok, reason = harness.set_param("width", 0.3)
    assert not ok and "available" in reason
    ok, reason = harness.set_param("policy", "turbo")
    assert not ok and "turbo" in reason
    ok, reason = harness.set_param("target_fps", -5.0)
    assert not ok and "target_fps" in reason
    ok, reason = harness.set_param("overlay_alpha", 2.0)
    assert not ok and "overlay_alpha" in reason
    ok, reason = harness.set_param("backend", "torch")
    assert not ok and "read-only" in reason
    ok, reason = harness.set_param("fps_window", 2.5)
    assert not ok and "integer" in reason


@pytest.mark.slow
def test_width_switch_takes_effect_on_next_frame_without_loss(running, frames, expected) -> None:
    harness, _, _ = running
    sequence = [0.25, 1.0, 0.5, 0.75, 0.25]
    for step, width in enumerate(sequence):
        ok, reason = harness.set_param("width", width)
        assert ok, reason
        index = step % len(frames)
        msg = harness.wait_labels(harness.send(frames[index]))
        labels = np.frombuffer(msg.data, np.uint8).reshape(360, 480)
        assert np.array_equal(labels, expected(index, width)), f"frame after switch to {width} not at {width}"
        wait_until(lambda w=width: harness.latest_width() == pytest.approx(w), 5, f"~/width {width}")
    ok, reason = harness.set_param("width", 1.0)
    assert ok, reason


@pytest.mark.slow
def test_battery_moves_width_down_and_up_with_hysteresis(running, frames, expected, tmp_path) -> None:
    harness, _, log = running
    ok, reason = harness.set_param("policy", "battery")
    assert ok, reason
    # thresholds 0.2/0.4/0.6 for widths 0.5/0.75/1.0, hysteresis 0.05
    steps = [
        (0.9, 1.0),
        (0.5, 0.75),
        (0.3, 0.5),
        (0.1, 0.25),
        (0.22, 0.25),
        (0.27, 0.5),
        (math.nan, 0.5),
        (0.62, 0.75),
        (0.7, 1.0),
    ]
    for level, want in steps:
        harness.pub_battery.publish(BatteryState(percentage=level))
        shown = "unknown" if math.isnan(level) else f"{level:.3f}"
        wait_until(lambda s=shown: harness.diag.get("battery") == s, 5, f"battery {shown} in diagnostics")
        harness.wait_labels(harness.send(frames[0]))
        wait_until(
            lambda w=want: harness.latest_width() == pytest.approx(w), 5, f"width {want} at battery {level}"
        )
    # the frame after the last switch runs at the new width
    msg = harness.wait_labels(harness.send(frames[1]))
    assert np.array_equal(np.frombuffer(msg.data, np.uint8).reshape(360, 480), expected(1, 1.0))
    text = log.read_text()
    assert "-> 0.25: battery 10% below 20%" in text, text
    ok, reason = harness.set_param("policy", "fixed")
    assert ok, reason


@pytest.mark.slow
def test_bad_frames_are_dropped_counted_and_node_keeps_running(running, frames, expected) -> None:
    harness, proc, _ = running
    before = int(harness.diag.get("drops_invalid", "0"))
    key = harness.send(frames[0], encoding="16UC1")
    wait_until(
        lambda: int(harness.diag.get("drops_invalid", "0")) == before + 1, 10, "an invalid drop counted"
    )
    assert "unsupported image encoding '16UC1'" in harness.diag["last_error"]
    truncated = Image(height=360, width=480, encoding="rgb8", step=1440, data=bytes(100))
    harness.pub_image.publish(truncated)
    wait_until(lambda: int(harness.diag.get("drops_invalid", "0")) == before + 2, 10, "a second invalid drop")
    assert "truncated" in harness.diag["last_error"]
    assert key not in harness.labels
    assert proc.poll() is None
    msg = harness.wait_labels(harness.send(frames[2]))
    assert np.array_equal(np.frombuffer(msg.data, np.uint8).reshape(360, 480), expected(2, 1.0))


@pytest.mark.slow
def test_compressed_input(running, frames, backend) -> None:
    harness, _, _ = running
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    assert ok
    key = harness.next_stamp()
    msg = CompressedImage(format="jpeg", data=data.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = key
    msg.header.frame_id = "compressed_camera"
    harness.pub_compressed.publish(msg)
    labels_msg = harness.wait_labels(key)
    assert labels_msg.header.frame_id == "compressed_camera"
    decoded = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    labels = np.frombuffer(labels_msg.data, np.uint8).reshape(360, 480)
    assert np.array_equal(labels, backend.infer(decoded, 1.0))


@pytest.mark.slow
def test_labels_at_network_size_scale_camera_info(running, frames, backend) -> None:
    harness, _, _ = running
    ok, reason = harness.set_param("labels_at_network_size", True)
    assert ok, reason
    key = harness.send(frames[0])
    msg = harness.wait_labels(key)
    assert (msg.height, msg.width) == (96, 128)
    small = backend.infer(cv2.resize(frames[0], (128, 96), interpolation=cv2.INTER_LINEAR), 1.0)
    assert np.array_equal(np.frombuffer(msg.data, np.uint8).reshape(96, 128), small)  # the network's own
    wait_until(lambda: key in harness.infos, 5, "scaled camera_info")
    info = harness.infos[key]
    assert (info.height, info.width) == (96, 128)
    assert info.k[0] == pytest.approx(400 * 128 / 480) and info.k[5] == pytest.approx(180 * 96 / 360)
    ok, reason = harness.set_param("labels_at_network_size", False)
    assert ok, reason


@pytest.mark.slow
def test_overlay_published_once_subscribed(running, frames, expected, backend) -> None:
    """At the network's size (default) the overlay blends over the image the network saw; at the input's
    size over the frame, the colours upsampled."""
    harness, _, _ = running
    overlays: dict[tuple[int, int], Image] = {}
    sub = harness.node.create_subscription(
        Image, f"{harness.ns}/slimseg_node/overlay", lambda m: Harness._store(overlays, m), RELIABLE
    )
    try:
        wait_until(
            lambda: harness.node.count_publishers(f"{harness.ns}/slimseg_node/overlay") > 0, 5, "overlay"
        )
        key = None
        for _ in range(20):  # the node sees the new subscriber after discovery: send until it publishes
            key = harness.send(frames[0])
            harness.wait_labels(key)
            time.sleep(0.1)
            if key in overlays:
                break
        assert key in overlays, "no overlay although subscribed"
        palette = make_palette(harness.class_info["classes"])
        seen = cv2.resize(frames[0], (128, 96), interpolation=cv2.INTER_LINEAR)
        want = overlay(seen, colorize(backend.infer(seen, 1.0), palette), 0.5)
        assert (overlays[key].height, overlays[key].width, overlays[key].encoding) == (96, 128, "rgb8")
        assert np.array_equal(np.frombuffer(overlays[key].data, np.uint8).reshape(96, 128, 3), want)

        ok, reason = harness.set_param("visualization_size", "input")
        assert ok, reason
        key = harness.send(frames[0])
        wait_until(lambda: key in overlays, 5, "overlay at the input's size")
        want = overlay(frames[0], colorize(expected(0, 1.0), palette), 0.5)
        assert np.array_equal(np.frombuffer(overlays[key].data, np.uint8).reshape(360, 480, 3), want)
    finally:
        harness.node.destroy_subscription(sub)
        ok, reason = harness.set_param("visualization_size", "network")
        assert ok, reason


@pytest.mark.slow
def test_enable_service_pauses_and_resumes(running, frames) -> None:
    harness, _, _ = running
    reply = harness.call(SetBool, "enable", SetBool.Request(data=False))
    assert reply.success and "paused" in reply.message
    paused_key = harness.send(frames[0])
    wait_until(lambda: harness.diag.get("frames_paused", "0") != "0", 5, "a paused frame counted")
    time.sleep(0.5)
    assert paused_key not in harness.labels
    reply = harness.call(SetBool, "enable", SetBool.Request(data=True))
    assert reply.success
    harness.wait_labels(harness.send(frames[0]))


@pytest.mark.slow
def test_diagnostics_report_rates_latency_and_drops(running) -> None:
    harness, _, _ = running
    diag = harness.diag
    for key in (
        "input_rate_hz",
        "output_rate_hz",
        "latency_from_stamp_p50_ms",
        "latency_from_receipt_p95_ms",
        "inference_p50_ms",
        "width",
        "policy",
        "drops",
        "battery",
        "backend",
    ):
        assert key in diag, key
    assert diag["backend"] == "onnxruntime-cpu"
    assert float(diag["latency_from_receipt_p50_ms"]) > 0
    assert int(diag["frames_processed"]) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_every_encoding_round_trip(running, frames, backend, encoding: str) -> None:
    """A camera frame in each accepted encoding (padded rows), published to the running node: its labels
    are the backend's labels of OpenCV's own decoding of those samples, with the input's header."""
    harness, proc, _ = running
    ok, reason = harness.set_param("width", 1.0)
    assert ok, reason
    invalid = harness.diag.get("drops_invalid")
    samples = encode(frames[2], encoding)
    key = harness.send_samples(samples, encoding, pad=6)
    msg = harness.wait_labels(key)
    assert (msg.height, msg.width, msg.encoding) == (360, 480, "mono8")
    assert msg.header.frame_id == f"camera_{harness.sequence}"
    labels = np.frombuffer(msg.data, np.uint8).reshape(360, 480)
    assert np.array_equal(labels, backend.infer(reference_rgb(samples, encoding), 1.0)), encoding
    assert harness.diag.get("drops_invalid") == invalid and proc.poll() is None


@pytest.mark.slow
def test_unsupported_encodings_are_counted_throttled_and_survived(running, frames) -> None:
    """Each refused frame is counted; the error log is throttled to one line per diagnostics_period_s."""
    harness, proc, log = running

    def dropped() -> int:
        return int(harness.diag.get("drops_invalid", "0")) + int(harness.diag.get("drops_superseded", "0"))

    keys = []
    for name in ("8UC1", "32FC1"):
        count = int(harness.diag.get("drops_invalid", "0"))
        keys.append(harness.send_samples(np.zeros((360, 480), np.uint8), name))
        wait_until(lambda c=count: int(harness.diag.get("drops_invalid", "0")) == c + 1, 10, f"{name} seen")
        assert f"unsupported image encoding '{name}'" in harness.diag["last_error"]
    time.sleep(0.25)  # past the throttle period of the last error line
    before, start = dropped(), time.monotonic()
    for _ in range(10):  # a burst: 10 frames in about 0.3 s
        keys.append(harness.send_samples(np.zeros((360, 480), np.uint8), "nv12"))
        time.sleep(0.03)
    burst = time.monotonic() - start
    wait_until(lambda: dropped() == before + 10, 10, "10 nv12 frames counted as dropped")
    assert "unsupported image encoding 'nv12'" in harness.diag["last_error"]
    assert not any(k in harness.labels for k in keys) and proc.poll() is None
    assert harness.diag.get("image_decoder") in ("own", "cv_bridge")
    harness.wait_labels(harness.send(frames[0]))  # still working
    logged = log.read_text().count("unsupported image encoding 'nv12'")
    assert 1 <= logged <= burst / 0.2 + 2, f"{logged} error lines for 10 frames in {burst:.2f} s"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_resize_modes_map_labels_and_camera_info_back(running, frames, backend, manifest, mode: str) -> None:
    """A 16:9 frame on the 4:3 network. Labels at the frame's size cover the frame (crop margins void) and
    keep the input's camera_info; at the network's size camera_info is mapped (letterbox pad, crop offset)."""
    harness, _, _ = running
    wide = np.ascontiguousarray(frames[1][45:315])  # 480x270
    info = CameraInfo(width=480, height=270, k=[500.0, 0, 250, 0, 500, 130, 0, 0, 1])
    info.p = [500.0, 0, 250, 0, 0, 500, 130, 0, 0, 0, 1, 0]
    harness.pub_info.publish(info)
    for name, value in (("resize_mode", mode), ("visualization_size", "input")):
        ok, reason = harness.set_param(name, value)
        assert ok, reason
    void = harness.class_info["ignore_index"]
    palette = make_palette(harness.class_info["classes"])
    geometry = fit((270, 480), (96, 128), mode)
    mean = Manifest.load(manifest).normalization[0]
    network_labels = backend.infer(to_network(wide, geometry, tuple(round(v) for v in mean)), 1.0)
    try:
        wait_until(lambda: harness.diag.get("resize_mode") == mode, 5, f"resize_mode {mode} in diagnostics")
        key = harness.send(wide)
        msg = harness.wait_labels(key)
        assert (msg.height, msg.width) == (270, 480)
        labels = np.frombuffer(msg.data, np.uint8).reshape(270, 480)
        assert np.array_equal(labels, labels_to_frame(network_labels, geometry, void))
        if mode == "stretch":
            assert np.array_equal(labels, backend.infer(wide, 1.0))  # the backend's own resizing
        if mode == "crop":
            assert (labels[:, :60] == void).all() and (labels[:, 420:] == void).all()
            assert (labels[:, 60:420] != void).all()
        else:
            assert (labels != void).all()
        wait_until(lambda: key in harness.colors and key in harness.infos, 5, "colour and camera_info")
        color = np.frombuffer(harness.colors[key].data, np.uint8).reshape(270, 480, 3)
        assert np.array_equal(color, colorize(labels, palette))
        assert list(harness.infos[key].k) == list(info.k) and harness.infos[key].width == 480

        for name, value in (("labels_at_network_size", True), ("visualization_size", "network")):
            ok, reason = harness.set_param(name, value)
            assert ok, reason
        key = harness.send(wide)
        msg = harness.wait_labels(key)
        assert (msg.height, msg.width) == (96, 128)
        small = np.frombuffer(msg.data, np.uint8).reshape(96, 128)
        wait_until(lambda: key in harness.colors, 5, "colour at the network's size")
        color = np.frombuffer(harness.colors[key].data, np.uint8).reshape(96, 128, 3)
        assert np.array_equal(color, colorize(small, palette))  # letterbox padding: the void colour
        if mode == "letterbox":
            assert (small[:12] == void).all() and (small[84:] == void).all()
            assert np.array_equal(small[12:84], network_labels[12:84])
        else:
            assert np.array_equal(small, network_labels)
        wait_until(lambda: key in harness.infos, 5, "camera_info at the network's size")
        mapped = harness.infos[key]
        assert (mapped.width, mapped.height) == (128, 96)
        s, t = 128 / 480, 96 / 270  # letterbox scales both axes by s, crop both by t, stretch x by s, y by t
        fx, fy, cx, cy = {
            "stretch": (500 * s, 500 * t, 250 * s, 130 * t),
            "letterbox": (500 * s, 500 * s, 250 * s, 130 * s + 12),  # 12 padding rows above
            "crop": (500 * t, 500 * t, (250 - 60) * t, 130 * t),  # 60 columns cut on the left
        }[mode]
        assert list(mapped.k) == pytest.approx([fx, 0, cx, 0, fy, cy, 0, 0, 1])
        assert list(mapped.p) == pytest.approx([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0])
    finally:
        for name, value in (("labels_at_network_size", False), ("resize_mode", "stretch"),
                            ("visualization_size", "network")):
            ok, reason = harness.set_param(name, value)
            assert ok, reason


@pytest.mark.slow
def test_invalid_resize_mode_is_rejected(running) -> None:
    harness, _, _ = running
    ok, reason = harness.set_param("resize_mode", "zoom")
    assert not ok and "resize_mode 'zoom' is not one of stretch, letterbox, crop" in reason


@pytest.mark.slow
def test_sigint_exits_cleanly(running) -> None:
    _, proc, log = running
    assert proc.stop(timeout=15) == 0
    assert "Traceback" not in log.read_text()
