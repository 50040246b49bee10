"""Test side of the ROS graph around one slimseg_node process: its topics, services and a few helpers.

Shared by the node, lifecycle and bag tests. The process and the client context come from the runtime's
own harness (slimseg_ros.node_process); this module adds what only tests need: publishers of test frames
with known stamps, recording subscriptions and polling assertions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
from camera_encodings import fill_raw
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, String

from slimseg_ros.node_process import NodeClient
from slimseg_ros.qos import LATCHED_QOS

# The test's own side: reliable input (the node runs with reliable_qos) and a deep queue, so a burst of
# outputs is kept for the assertions rather than replaced by the newest.
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll (the executor spins in its own thread) until the condition holds, else fail naming it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Harness:
    """The test side of the graph: publishers, subscriptions and service calls in the node's namespace."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client
        self.node, self.ns = client.node, client.process.namespace
        node, namespace = self.node, self.ns
        self.labels: dict[tuple[int, int], Image] = {}
        self.colors: dict[tuple[int, int], Image] = {}
        self.infos: dict[tuple[int, int], CameraInfo] = {}
        self.widths: list[float] = []
        self.diag: dict[str, str] = {}
        self.class_info: dict | None = None
        self.pub_image = node.create_publisher(Image, f"{namespace}/image", RELIABLE)
        self.pub_compressed = node.create_publisher(
            CompressedImage, f"{namespace}/image/compressed", RELIABLE
        )
        self.pub_info = node.create_publisher(CameraInfo, f"{namespace}/camera_info", RELIABLE)
        self.pub_battery = node.create_publisher(BatteryState, f"{namespace}/battery_state", RELIABLE)
        out = client.process.full_name
        node.create_subscription(Image, f"{out}/labels", lambda m: self._store(self.labels, m), RELIABLE)
        node.create_subscription(Image, f"{out}/color", lambda m: self._store(self.colors, m), RELIABLE)
        node.create_subscription(
            CameraInfo, f"{out}/camera_info", lambda m: self._store(self.infos, m), RELIABLE
        )
        node.create_subscription(Float32, f"{out}/width", lambda m: self.widths.append(m.data), LATCHED_QOS)
        node.create_subscription(String, f"{out}/class_info", self._on_class_info, LATCHED_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RELIABLE)
        self.sequence = 0

    @staticmethod
    def _store(into: dict, msg) -> None:
        into[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def _on_class_info(self, msg: String) -> None:
        self.class_info = json.loads(msg.data)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.client.process.full_name):
                self.diag = {kv.key: kv.value for kv in status.values}

    def next_stamp(self) -> tuple[int, int]:
        self.sequence += 1
        return 1000 + self.sequence, 1000 * self.sequence

    def send(self, rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int]:
        """Publish one frame with a fresh stamp and frame_id; returns the stamp key."""
        key = self.next_stamp()
        pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0]}.get(encoding, rgb)
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding)
        msg.header.stamp.sec, msg.header.stamp.nanosec = key
        msg.header.frame_id = f"camera_{self.sequence}"
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        msg.step = rgb.shape[1] * channels
        msg.data = np.ascontiguousarray(pixels).tobytes()
        self.pub_image.publish(msg)
        return key

    def send_samples(self, samples: np.ndarray, encoding: str, pad: int = 0) -> tuple[int, int]:
        """Publish camera samples in any encoding (tests/camera_encodings.py), with `pad` bytes per row."""
        key = self.next_stamp()
        msg = fill_raw(Image(), samples, encoding, pad=pad)
        msg.header.stamp.sec, msg.header.stamp.nanosec = key
        msg.header.frame_id = f"camera_{self.sequence}"
        self.pub_image.publish(msg)
        return key

    def wait_labels(self, key: tuple[int, int], timeout: float = 15.0) -> Image:
        wait_until(lambda: key in self.labels, timeout, f"labels for stamp {key}")
        return self.labels[key]

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        """Call one of the node's services (name relative to the node) through the runtime's client."""
        return self.client.call(srv_type, name, request, timeout)

    def set_param(self, name: str, value) -> tuple[bool, str]:
        """Set one parameter through the node's parameter service; (successful, reason)."""
        rejected = self.client.set_parameters({name: value})
        return name not in rejected, rejected.get(name, "")

    def latest_width(self) -> float | None:
        return self.widths[-1] if self.widths else None
