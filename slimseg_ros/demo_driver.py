"""The demo's own ROS 2 node: plays frames as a camera, drains a battery, and records what slimseg_node does.

It talks to the real `slimseg_node` over DDS exactly as a robot would (sensor_msgs/Image in,
sensor_msgs/BatteryState in, ~/labels, ~/overlay, ~/width and /diagnostics out, parameters set through the
node's parameter services), so the demo exercises the product, not a shortcut around it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, Image
from std_msgs.msg import Float32

from slimseg_ros.image_codec import fill_image, image_to_rgb

# Matches the node's defaults: best-effort camera input, reliable outputs, latched width.
CAMERA_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


@dataclass
class Switch:
    """One width change seen on ~/width, with the battery level and phase at that moment."""

    t: float
    width: float
    previous: float | None
    battery: float | None
    phase: str


@dataclass
class Recording:
    """Everything the demo plots and summarises, filled from ROS callbacks (guarded by a lock)."""

    samples: list[dict] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    overlays: list[np.ndarray] = field(default_factory=list)
    published: int = 0
    received: int = 0


class DemoDriver(Node):
    """Camera + battery simulator and recorder for one slimseg_node in namespace `ns`."""

    def __init__(self, ns: str, frames: Sequence[np.ndarray], camera_fps: float, keep_overlays: int = 40,
                 node_name: str = "slimseg_node") -> None:
        super().__init__("slimseg_demo_driver", namespace=ns)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.rec = Recording()
        self.phase = "start"
        self.battery: float | None = 1.0
        self.target_fps: float | None = None
        self.width: float | None = None
        self._arrivals: deque[float] = deque(maxlen=256)
        self._latencies: deque[float] = deque(maxlen=64)
        self._keep_overlays = keep_overlays
        self._overlay_every = 1
        self._overlay_count = 0
        self._frames = [self._frame_msg(f) for f in frames]
        self._index = 0
        self.pub_image = self.create_publisher(Image, "image", CAMERA_QOS)
        self.pub_battery = self.create_publisher(BatteryState, "battery_state", 10)
        out = f"{node_name}/"
        self.create_subscription(Image, out + "labels", self._on_labels, OUTPUT_QOS)
        self.create_subscription(Image, out + "overlay", self._on_overlay, OUTPUT_QOS)
        self.create_subscription(Float32, out + "width", self._on_width, LATCHED_QOS)
        self.params = AsyncParameterClient(self, f"{self.get_namespace().rstrip('/')}/{node_name}")
        self.create_timer(1.0 / camera_fps, self._publish_frame)
        self.create_timer(0.2, self._publish_battery)
        self.create_timer(0.25, self._sample)

    # -- camera and battery -------------------------------------------------------------------------
    def _frame_msg(self, rgb: np.ndarray) -> Image:
        msg = fill_image(Image(), np.ascontiguousarray(rgb), "rgb8")
        msg.header.frame_id = "camera"
        return msg

    def _publish_frame(self) -> None:
        msg = self._frames[self._index % len(self._frames)]
        self._index += 1
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_image.publish(msg)
        with self._lock:
            self.rec.published += 1

    def _publish_battery(self) -> None:
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.percentage = float("nan") if self.battery is None else float(self.battery)
        msg.present = True
        msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
        self.pub_battery.publish(msg)

    # -- outputs of slimseg_node --------------------------------------------------------------------
    def _on_labels(self, msg: Image) -> None:
        now = self.get_clock().now()
        sent = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        latency = now.nanoseconds * 1e-9 - sent
        with self._lock:
            self.rec.received += 1
            self._arrivals.append(time.monotonic())
            self._latencies.append(latency)

    def _on_overlay(self, msg: Image) -> None:
        self._overlay_count += 1
        if self._overlay_count % self._overlay_every:
            return
        rgb = np.array(image_to_rgb(msg))
        with self._lock:
            self.rec.overlays.append(rgb)
            if len(self.rec.overlays) >= 2 * self._keep_overlays:  # keep a bounded, evenly spaced subset
                self.rec.overlays = self.rec.overlays[::2]
                self._overlay_every *= 2

    def _on_width(self, msg: Float32) -> None:
        width = round(float(msg.data), 4)
        with self._lock:
            if width != self.width:
                self.rec.switches.append(Switch(self.elapsed(), width, self.width, self.battery, self.phase))
            self.width = width

    # -- bookkeeping -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the driver started (the timeline's x axis)."""
        return time.monotonic() - self._t0

    def stats(self) -> dict:
        """Output fps over the last second and median latency of the last frames (for the live view)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._arrivals if now - t <= 1.0]
            latency = float(np.median(self._latencies)) * 1e3 if self._latencies else float("nan")
            return {
                "t": self.elapsed(), "phase": self.phase, "battery": self.battery, "width": self.width,
                "fps": float(len(recent)), "latency_ms": latency, "target_fps": self.target_fps,
                "published": self.rec.published, "received": self.rec.received,
            }

    def _sample(self) -> None:
        sample = self.stats()
        with self._lock:
            self.rec.samples.append(sample)

    def set_node_parameters(self, timeout_s: float = 10.0, **values: object) -> list[str]:
        """Set slimseg_node parameters at run time (as `ros2 param set` would); returns rejection reasons."""
        if not self.params.wait_for_services(timeout_sec=timeout_s):
            return ["slimseg_node parameter services did not appear"]
        future = self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not future.done():
            return ["parameter change timed out"]
        return [r.reason for r in future.result().results if not r.successful]
