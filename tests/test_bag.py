"""rosbag2 in and out with the real libraries: the shipped frames as a bag (sqlite3 and MCAP, Image and
CompressedImage) played through the real node process, and the node's outputs recorded to an MCAP that is read
back with rosbags and with Foxglove's own decoder (mcap-ros2-support). Nothing is mocked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags", reason="rosbag2 support not installed (pip install 'slimseg_ros[bag]')")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support not installed (pip install 'slimseg_ros[bag]')")
cv2 = pytest.importorskip("cv2")

from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.interfaces import QosDurability  # noqa: E402

from slimseg_ros.bag import BagWriter, ImageBag, message_types, serialize  # noqa: E402
from slimseg_ros.demo_bag import PERIOD_NS, START_NS, TOPIC, write_demo_bag  # noqa: E402
from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.frames import SHIPPED_DIR  # noqa: E402
from slimseg_ros.manifest import Manifest  # noqa: E402

SHIPPED = sorted((SHIPPED_DIR / "images").glob("*.jpg"))
NODE = "/slimseg/slimseg_node"  # bag_play.NAMESPACE + the node's name


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(receive time ns, deserialized message)] with rosbags, as any rosbag2 user would read it."""
    topics: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for connection, t_ns, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            topics.setdefault(connection.topic, []).append((t_ns, msg))
    return topics


def stamp(msg) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --- bags without ROS (fast) ------------------------------------------------------------------------------
def test_demo_bag_holds_the_shipped_frames_at_camera_timing(tmp_path: Path) -> None:
    raw = write_demo_bag(tmp_path / "raw")
    jpeg = write_demo_bag(tmp_path / "jpeg", compressed=True, storage="sqlite3")
    assert yaml.safe_load((raw / "metadata.yaml").read_text())["rosbag2_bagfile_information"][
        "storage_identifier"] == "mcap"
    assert list(jpeg.glob("*.db3"))
    frames = read_bag(raw)[TOPIC]
    packed = read_bag(jpeg)[TOPIC + "/compressed"]
    assert len(frames) == len(packed) == len(SHIPPED) == 15
    for i, ((t_ns, image), (_, compressed), path) in enumerate(zip(frames, packed, SHIPPED, strict=True)):
        want = START_NS + i * PERIOD_NS
        assert t_ns == want and stamp(image) == stamp(compressed) == (want // 10**9, want % 10**9)
        assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 360, 480, 1440)
        assert np.array_equal(image.data.reshape(360, 480, 3), rgb(path))
        assert compressed.format == "jpeg" and compressed.data.tobytes() == path.read_bytes()


def test_demo_bag_is_reproducible(tmp_path: Path) -> None:
    first = write_demo_bag(tmp_path / "a" / "bag", compressed=True)
    second = write_demo_bag(tmp_path / "b" / "bag", compressed=True)
    assert (first / "bag.mcap").read_bytes() == (second / "bag.mcap").read_bytes()


def _two_camera_bag(path: Path) -> Path:
    types = message_types()
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                          frame_id="cam")
    with BagWriter(path, storage="sqlite3") as writer:
        for topic in ("/left/image_raw", "/right/image_raw"):
            writer.add_topic(topic, "sensor_msgs/msg/Image")
            msg = types["sensor_msgs/msg/Image"](header=header, height=1, width=1, encoding="mono8",
                                                 is_bigendian=0, step=1, data=np.zeros(1, np.uint8))
            writer.write(topic, 1, serialize(msg, "sensor_msgs/msg/Image"))
        writer.add_topic("/chatter", "std_msgs/msg/String")
        writer.write("/chatter", 1, serialize(types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    return path


def test_image_bag_picks_the_topic_or_names_the_candidates(tmp_path: Path) -> None:
    path = _two_camera_bag(tmp_path / "two")
    with pytest.raises(SlimsegError, match=r"2 image topics: /left/image_raw \(Image, 1\), /right/image_raw "
                       r"\(Image, 1\).*--topic"):
        ImageBag(path)
    with pytest.raises(SlimsegError, match=r"no image topic /chatter; its image topics: /left"):
        ImageBag(path, "/chatter")
    with ImageBag(next(path.glob("*.db3")), "/right/image_raw") as bag:  # the file works as the folder
        assert bag.input == "image" and [m.stamp for m in bag.messages()] == [(1, 0)]
    with pytest.raises(SlimsegError, match="no bag at"):
        ImageBag(tmp_path / "missing")
    with pytest.raises(SlimsegError, match="exists"):
        BagWriter(path)  # never overwrites
    assert (path / "metadata.yaml").is_file()


def test_bag_features_without_rosbags_say_what_to_install(tmp_path: Path) -> None:
    """The runtime starts without the bag libraries; a bag option then names the extra in one line."""
    code = ("import sys; sys.modules['rosbags'] = None; from slimseg_ros.cli import main; "
            f"sys.exit(main(['demo', '--bag', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "not installed: rosbags (`pip install 'slimseg_ros[bag]'`)" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- through the real node (slow) ------------------------------------------------------------------------
def play(manifest: Path, out: Path, *bag_args: str) -> dict:
    cmd = [sys.executable, "-m", "slimseg_ros.cli", "demo", "--manifest", str(manifest), "--out", str(out),
           "--bag", *bag_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "bag_summary.json").read_text())
    assert summary["frames"]["sentence"] in proc.stdout
    return summary


@pytest.fixture(scope="module")
def recorded(manifest: Path, tmp_path_factory) -> tuple[dict, Path]:
    """`slimseg demo --bag --as-fast --record`: the shipped frames as an MCAP bag, outputs recorded."""
    out = tmp_path_factory.mktemp("bag_play")
    summary = play(manifest, out, "--as-fast", "--record", str(out / "record"))
    return summary, out / "record"


@pytest.mark.slow
def test_as_fast_labels_every_frame_of_the_generated_bag(recorded) -> None:
    summary, _ = recorded
    assert summary["mode"] == "as_fast" and summary["topic"] == TOPIC
    assert summary["frames"]["published"] == summary["frames"]["labelled"] == 15
    assert summary["frames"]["adds_up"] and summary["node_exit_code"] == 0


@pytest.mark.slow
def test_recorded_mcap_holds_input_and_outputs_equal_to_the_backend(recorded, manifest: Path) -> None:
    from slimseg_ros.backends import create_backend

    _, path = recorded
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["relative_file_paths"] == ["record.mcap"]
    topics = read_bag(path)
    inputs, labels, colors = topics["/slimseg/image"], topics[f"{NODE}/labels"], topics[f"{NODE}/color"]
    assert len(inputs) == len(labels) == len(colors) == 15
    assert [stamp(m) for _, m in labels] == [stamp(m) for _, m in inputs]  # the input header kept
    assert [float(m.data) for _, m in topics[f"{NODE}/width"]] == [1.0]  # config default: fixed, 1.0
    classes = json.loads(topics[f"{NODE}/class_info"][0][1].data)
    names = Manifest.load(manifest).class_names
    assert classes["widths"] == [0.25, 0.5, 0.75, 1.0] and [c["name"] for c in classes["classes"]] == names
    assert topics["/diagnostics"]
    with create_backend("onnxruntime", manifest) as backend:
        for (_, msg), path_jpg in zip(labels[:3], SHIPPED, strict=False):
            assert (msg.encoding, msg.height, msg.width) == ("mono8", 360, 480)
            assert np.array_equal(msg.data.reshape(360, 480), backend.infer(rgb(path_jpg), 1.0))
    with AnyReader([path]) as reader:  # latched topics replay latched (ros2 bag play uses the offered QoS)
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
    assert qos[f"{NODE}/width"].durability == QosDurability.TRANSIENT_LOCAL
    assert qos[f"{NODE}/labels"].durability == QosDurability.VOLATILE


@pytest.mark.slow
def test_recorded_mcap_decodes_with_foxglove_mcap_ros2(recorded) -> None:
    """Foxglove reads the ros2msg schemas embedded in the MCAP; its own decoder must decode every message."""
    from mcap_ros2.reader import read_ros2_messages

    _, path = recorded
    counts: dict[str, int] = {}
    for m in read_ros2_messages(str(path / "record.mcap")):
        assert m.schema.encoding == "ros2msg" and m.channel.message_encoding == "cdr"
        counts[m.channel.topic] = counts.get(m.channel.topic, 0) + 1
        if m.channel.topic.endswith("/labels"):
            assert m.ros_msg.encoding == "mono8" and len(m.ros_msg.data) == 360 * 480
    assert counts == {t: len(v) for t, v in read_bag(path).items()}


@pytest.mark.slow
def test_compressed_sqlite3_bag_plays_at_the_bag_rate(manifest: Path, tmp_path: Path) -> None:
    bag = write_demo_bag(tmp_path / "jpeg", compressed=True, storage="sqlite3")
    summary = play(manifest, tmp_path / "out", str(bag))
    frames = summary["frames"]
    assert summary["mode"] == "bag_rate" and frames["published"] == 15 and frames["adds_up"]
    span = summary["publish_t"][-1] - summary["publish_t"][0]
    assert 14 * 0.4 * 0.95 <= span <= 14 * 0.4 + 2.0, span  # the recorded 0.4 s spacing, not a burst
    # the node is idle between frames 0.4 s apart: none is replaced; best effort may lose one in transport
    assert frames["unlabelled"]["replaced"] == 0 and frames["labelled"] >= 14, frames


@pytest.mark.slow
def test_record_subcommand_writes_a_running_nodes_outputs(manifest: Path, frames, tmp_path: Path) -> None:
    from node_graph import Harness, wait_until

    from slimseg_ros.node_process import NodeClient, NodeProcess

    params = {"manifest": str(manifest), "backend": "onnxruntime", "reliable_qos": True}
    out = tmp_path / "rec"
    with NodeProcess(params, tmp_path, prefix="rec", env={"OMP_NUM_THREADS": "1"}) as proc, \
            NodeClient(proc, name="record_test") as client:
        client.wait_up("active")
        harness = Harness(client)
        cmd = [sys.executable, "-m", "slimseg_ros.cli", "record", "--node", proc.full_name, "--out", str(out),
               "--duration", "30"]
        log = tmp_path / "record.log"
        with open(log, "w") as handle:
            recorder = subprocess.Popen(cmd, env=proc.env, stdout=handle, stderr=subprocess.STDOUT)
        try:  # it says "recording" once matched with the node's publishers
            wait_until(lambda: "recording " in log.read_text(), 60, "the recorder to start")
            wait_until(lambda: harness.pub_image.get_subscription_count() > 0, 30, "the node's input")
            keys = []
            for frame in frames[:2]:  # one at a time: the input keeps only the newest frame
                keys.append(harness.send(frame))
                harness.wait_labels(keys[-1])
            time.sleep(1.0)  # the recorder is another subscriber: the last labels reach it as well
            recorder.send_signal(2)  # Ctrl-C: the bag is finished, exit 0
            recorder.wait(30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
    output = log.read_text()
    assert recorder.returncode == 0, output
    topics = read_bag(out)
    assert [stamp(m) for _, m in topics[f"{proc.full_name}/labels"]] == keys
    assert [float(m.data) for _, m in topics[f"{proc.full_name}/width"]] == [1.0]
    assert f"wrote {out}" in output and "Traceback" not in output
