"""`slimseg demo --bag`: a recorded camera topic played through the real node, every frame accounted for.

The bag's messages are published as they were recorded (serialized bytes, header stamps untouched, as
`ros2 bag play` does) on the input of a `slimseg_node` process started by the shared harness, either at the
bag's own rate (a camera's timing: the node keeps the newest frame, so a slow width drops frames as it would
on the robot) or as fast as the node takes them (the next frame once the previous one's labels are back, on
reliable QoS: every frame is labelled). Label maps come back with the input's stamp, so each frame is
accounted for with the demo's own accounting. `--record` writes the played input and the node's outputs to a
rosbag2 MCAP for `ros2 bag play` and Foxglove.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import Image

from slimseg_ros.bag import BagMessage, BagWriter, ImageBag
from slimseg_ros.bag_record import OutputRecorder, message_class
from slimseg_ros.demo_summary import account_frames
from slimseg_ros.errors import SlimsegError
from slimseg_ros.node_process import NodeClient, NodeProcess
from slimseg_ros.qos import LABELS_QOS, RELIABLE_INPUT_QOS, SENSOR_QOS

SHIPPED = "shipped"  # `--bag` without a path: the shipped frames, written as a bag first (demo_bag.py)
# A fixed namespace keeps recorded topic names stable across runs (/slimseg/slimseg_node/labels); the
# harness's private ROS domain already keeps runs apart.
NAMESPACE = "/slimseg"
MATCH_TIMEOUT_S = 30.0  # discovery between the player and the node once it is active
DRAIN_S = 1.5  # after the last frame: the node finishes it and its labels arrive
SUMMARY = "bag_summary.json"


class BagPlayer(Node):
    """Publishes a bag's frames on the node's input and notes, by header stamp, which come back labelled."""

    def __init__(self, context, node_name: str, input_topic: str, msgtype: str, reliable: bool) -> None:
        super().__init__("slimseg_bag_player", context=context)
        self._t0 = time.monotonic()
        self._done = threading.Condition()
        self._index: dict[tuple[int, int], int] = {}
        self.publish_t: list[float] = []
        self.label_index: list[int] = []
        self.label_t: list[float] = []
        self._labelled: set[int] = set()
        self.repeated_stamps = 0
        self.input_topic = input_topic
        self.pub = self.create_publisher(message_class(msgtype), input_topic,
                                         RELIABLE_INPUT_QOS if reliable else SENSOR_QOS)
        self.labels_topic = f"{node_name}/labels"
        self.create_subscription(Image, self.labels_topic, self._on_labels, LABELS_QOS)

    def elapsed(self) -> float:
        """Seconds since the player started (the accounting's clock)."""
        return time.monotonic() - self._t0

    def matched(self) -> bool:
        """The node subscribes to our input and publishes labels we receive."""
        return self.pub.get_subscription_count() > 0 and self.count_publishers(self.labels_topic) > 0

    def publish(self, msg: BagMessage) -> int:
        """Publish one frame as recorded; returns its number."""
        with self._done:
            index = len(self.publish_t)
            self.repeated_stamps += msg.stamp in self._index
            self._index[msg.stamp] = index
            self.publish_t.append(self.elapsed())
        self.pub.publish(msg.data)
        return index

    def _on_labels(self, msg: Image) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._done:
            index = self._index.get(stamp)
            if index is None:  # not a frame of this run
                return
            self.label_index.append(index)
            self.label_t.append(self.elapsed())
            self._labelled.add(index)
            self._done.notify_all()

    def wait_labelled(self, index: int, timeout: float) -> bool:
        """Wait until frame `index` has its labels (lockstep playback)."""
        with self._done:
            return self._done.wait_for(lambda: index in self._labelled, timeout)

    def play(self, bag: ImageBag, as_fast: bool, frame_timeout: float, writer: BagWriter | None,
             record_topic: str) -> None:
        """Every message of the bag's topic: at the bag's rate, or each after the previous one's labels."""
        start, first = time.monotonic(), None
        for msg in bag.messages():
            if not as_fast:
                first = msg.t_ns if first is None else first
                delay = start + (msg.t_ns - first) * 1e-9 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if writer is not None:
                writer.write(record_topic, self.get_clock().now().nanoseconds, msg.data)
            index = self.publish(msg)
            if as_fast:
                self.wait_labelled(index, frame_timeout)


def _node_process(args: argparse.Namespace, manifest: Path, bag: ImageBag, out: Path) -> NodeProcess:
    params = {"manifest": str(manifest.resolve()), "backend": args.backend, "threads": args.threads,
              "compressed": bag.compressed, "reliable_qos": bool(args.as_fast), "diagnostics_period_s": 0.5}
    env = {"FASTDDS_BUILTIN_TRANSPORTS": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")}
    return NodeProcess(params, out, namespace=NAMESPACE, env=env, log=out / "node.log",
                       params_file=out / "bag_params.yaml")


def _wait(condition, timeout: float, proc: NodeProcess, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise SlimsegError(f"slimseg_node exited (code {proc.returncode}) {what}; log {proc.log_path}:\n"
                               f"{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise SlimsegError(f"timed out after {timeout:.0f} s {what}", f"see {proc.log_path}")
        time.sleep(0.05)


def run(args: argparse.Namespace) -> int:
    """Play the bag through the node, account for its frames, write bag_summary.json (and --record)."""
    from slimseg_ros.demo import resolve_manifest
    from slimseg_ros.demo_bag import write_demo_bag
    from slimseg_ros.manifest import Manifest

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.bag) if args.bag != SHIPPED else out / "demo_bag"
    if args.bag == SHIPPED and not path.exists():
        write_demo_bag(path)
        print(f"wrote the shipped frames as a bag: {path}")
    with ImageBag(path, args.topic) as bag:
        kind = bag.topic.msgtype.rsplit("/", 1)[-1]
        print(f"playing {bag.topic.name} ({kind}, {bag.topic.count} frames) of {bag.path} "
              f"{'as fast as the node takes it' if args.as_fast else 'at the bag rate'}")
        manifest = resolve_manifest(args, out)
        n_widths = len(Manifest.load(manifest).widths)
        proc = _node_process(args, manifest, bag, out)
        writer = BagWriter(args.record) if args.record else None
        input_topic = f"{NAMESPACE}/{bag.input}"
        client = NodeClient(proc, make_node=lambda context: BagPlayer(
            context, proc.full_name, input_topic, bag.topic.msgtype, reliable=bool(args.as_fast)))
        player = client.node
        recorder = None
        if writer is not None:
            writer.add_topic(input_topic, bag.topic.msgtype, reliable=bool(args.as_fast))
            recorder = OutputRecorder(player, proc.full_name, writer)
        try:
            proc.start()
            client.wait_up("active", timeout=120.0)
            _wait(player.matched, MATCH_TIMEOUT_S, proc, "waiting for the node's topics")
            time.sleep(0.5)  # the reverse direction and the recorder's subscriptions match as well
            player.play(bag, bool(args.as_fast), args.frame_timeout, writer, input_topic)
            time.sleep(DRAIN_S)
        finally:
            proc.stop()
            client.close()
            if writer is not None:
                writer.close()
    account = account_frames(player.publish_t, player.label_index, player.label_t)
    summary = {
        "bag": str(bag.path), "topic": bag.topic.name, "msgtype": bag.topic.msgtype,
        "mode": "as_fast" if args.as_fast else "bag_rate", "repeated_stamps": player.repeated_stamps,
        "frames": {"published": account.published, "labelled": account.labelled,
                   "unlabelled": account.unlabelled, "adds_up": account.adds_up(),
                   "sentence": account.sentence(n_widths)},
        "publish_t": player.publish_t, "node_exit_code": proc.returncode,
        "record": {"path": str(args.record), "counts": recorder.counts()} if recorder else None,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))
    print(summary["frames"]["sentence"])
    if player.repeated_stamps:
        print(f"note: {player.repeated_stamps} frames repeat an earlier header stamp; labels are matched to "
              "frames by stamp, so those frames count once")
    if recorder is not None:
        counts = ", ".join(f"{t} {n}" for t, n in recorder.counts().items())
        print(f"recorded {args.record} (rosbag2 MCAP): {input_topic} {account.published}, {counts}")
    print(f"summary: {out / SUMMARY}, node log: {proc.log_path}")
    return 0
