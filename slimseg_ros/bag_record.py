"""Record a running slimseg_node's outputs into a rosbag2 MCAP, as `ros2 bag record` would, without ROS tools.

Subscriptions are raw (serialized CDR), so the bag holds exactly the bytes the node published, stamped with
the time they arrived. The topics and their QoS come from one table (OUTPUTS); the contract's outputs that a
user wants next to the input when reviewing a run: label maps, colour mask, camera_info, the width in use,
the class table and /diagnostics. The overlay is optional: the node computes it only while subscribed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rclpy.qos import QoSProfile, ReliabilityPolicy

from slimseg_ros.bag import BagWriter
from slimseg_ros.qos import LABELS_QOS, LATCHED_QOS, OUTPUT_QOS


@dataclass(frozen=True)
class Output:
    """A topic of the node: name (relative to the node, or absolute), type, and whether it is latched."""

    name: str
    msgtype: str
    latched: bool = False
    depth: int = OUTPUT_QOS.depth  # what the node's publisher keeps; /diagnostics keeps 10


OUTPUTS = {
    o.name: o for o in (
        Output("labels", "sensor_msgs/msg/Image", depth=LABELS_QOS.depth),
        Output("color", "sensor_msgs/msg/Image"),
        Output("overlay", "sensor_msgs/msg/Image"),
        Output("camera_info", "sensor_msgs/msg/CameraInfo", depth=LABELS_QOS.depth),
        Output("width", "std_msgs/msg/Float32", latched=True, depth=1),
        Output("class_info", "std_msgs/msg/String", latched=True, depth=1),
        Output("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", depth=10),
    )
}
DEFAULT_OUTPUTS = ("labels", "color", "camera_info", "width", "class_info", "/diagnostics")
# Our side keeps a deeper queue than the node's publisher, so a burst is written rather than replaced.
RECORD_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# A camera topic: best effort matches both best-effort (sensor data) and reliable publishers.
CAMERA_RECORD_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)


def message_class(msgtype: str) -> type:
    """The rclpy message class for 'pkg/msg/Name'."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class OutputRecorder:
    """Subscribes `node` (any rclpy node, spun elsewhere) to a slimseg_node's outputs, writes each message.

    `node_name` is the recorded node's full name (e.g. /robot/slimseg_node); topics are written under their
    full names, as `ros2 bag record` names them.
    """

    def __init__(self, node, node_name: str, writer: BagWriter, outputs: tuple[str, ...] = DEFAULT_OUTPUTS
                 ) -> None:
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown:
            raise ValueError(f"unknown outputs {unknown}; known: {', '.join(OUTPUTS)}")
        self.node, self.writer = node, writer
        self.topics: list[str] = []
        for key in outputs:
            out = OUTPUTS[key]
            topic = out.name if out.name.startswith("/") else f"{node_name.rstrip('/')}/{out.name}"
            self.add(topic, out.msgtype, LATCHED_QOS if out.latched else RECORD_QOS, latched=out.latched,
                     depth=out.depth)

    def add_camera(self, topic: str, msgtype: str = "sensor_msgs/msg/Image") -> None:
        """Also record a camera topic (sensor-data QoS), e.g. to show the labels over it in Foxglove."""
        self.add(topic, msgtype, CAMERA_RECORD_QOS, reliable=False, depth=1)

    def add(self, topic: str, msgtype: str, qos: QoSProfile, *, reliable: bool = True, latched: bool = False,
            depth: int = 2) -> None:
        """Subscribe to one topic and write what arrives; the bag notes the QoS its publisher offers."""
        self.writer.add_topic(topic, msgtype, reliable=reliable, latched=latched, depth=depth)

        def write(data: bytes) -> None:
            self.writer.write(topic, self.node.get_clock().now().nanoseconds, data)

        self.node.create_subscription(message_class(msgtype), topic, write, qos, raw=True)
        self.topics.append(topic)

    def counts(self) -> dict[str, int]:
        """Messages written per topic so far."""
        return {t: self.writer.counts.get(t, 0) for t in self.topics}
