"""The demo's own ROS 2 node: plays frames as a camera, drains a battery, and records what slimseg_node does.

It talks to the real `slimseg_node` over DDS exactly as a robot would (sensor_msgs/Image in,
sensor_msgs/BatteryState in, ~/labels, ~/width and /diagnostics out; ~/enable and the parameter services
through slimseg_ros.node_process), so the demo exercises the product, not a shortcut around it. Every
published frame and every label map is recorded by its header stamp, so afterwards each frame is accounted
for (see demo_summary).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import BatteryState, Image
from std_msgs.msg import Float32

from slimseg_ros.image_codec import fill_image, image_samples
from slimseg_ros.qos import LABELS_QOS, LATCHED_QOS, SENSOR_QOS

# /diagnostics keys kept in the record: what the policy acted on and the node's own frame counters.
DIAG_KEYS = {
    "policy_p50_ms": float, "policy_budget_ms": float, "input_rate_hz": float, "output_rate_hz": float,
    "frames_received": int, "frames_processed": int, "drops_superseded": int, "frames_paused": int,
    "drops_invalid": int, "drops_failed": int, "width_switches": int,
}


@dataclass
class WidthEvent:
    """A width seen on ~/width (t = when it arrived), with the battery level and phase at that moment."""

    t: float
    width: float
    previous: float | None
    battery: float | None
    phase: str


@dataclass
class Recording:
    """Everything the demo plots and accounts for, filled from ROS callbacks (guarded by the driver's lock).

    Frames are numbered in publish order; `label_*` lists are in arrival order and name the frame by number.
    """

    publish_t: list[float] = field(default_factory=list)   # per published frame: when
    publish_frame: list[int] = field(default_factory=list)  # per published frame: index into the clip
    label_index: list[int] = field(default_factory=list)    # per label map: the published frame it belongs to
    label_t: list[float] = field(default_factory=list)
    label_png: list[bytes] = field(default_factory=list)    # the label map itself, PNG-compressed
    samples: list[dict] = field(default_factory=list)       # live figures every 0.25 s
    diagnostics: list[dict] = field(default_factory=list)   # the node's /diagnostics, parsed
    widths: list[WidthEvent] = field(default_factory=list)
    disabled: list[list[float]] = field(default_factory=list)  # [from, to] while ~/enable was false
    camera_stop: float | None = None

    @property
    def published(self) -> int:
        """Frames the camera published."""
        return len(self.publish_t)

    @property
    def received(self) -> int:
        """Label maps that came back."""
        return len(self.label_t)


class DemoDriver(Node):
    """Camera + battery simulator and recorder for one slimseg_node in namespace `ns`.

    `hold` publishes each clip frame for that many camera periods (a clip sampled sparser than the camera
    rate then plays at its real speed instead of fast-forward). `context`: the NodeClient's, on the node's
    domain. Calls to the node's services go through that client; this node only publishes and records.
    """

    def __init__(self, ns: str, frames: Sequence[np.ndarray], camera_fps: float, n_widths: int,
                 hold: int = 1, node_name: str = "slimseg_node", context=None) -> None:
        super().__init__("slimseg_demo_driver", namespace=ns, context=context)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.wall0 = time.time()  # wall clock at t = 0, to place the node's log lines on the same axis
        self.rec = Recording()
        self.n_widths = n_widths
        self.phase = "starting"
        self.policy = "battery"
        self.battery: float | None = 1.0
        self.target_fps: float | None = None
        self.width: float | None = None
        self.camera_on = True
        self._hold = max(1, int(hold))
        self._stamp_index: dict[int, int] = {}
        self._recent_latency: deque[float] = deque(maxlen=15)
        self._frames = [self._frame_msg(f) for f in frames]
        self._tick = 0
        self._diag_name = f"{self.get_namespace().rstrip('/')}/{node_name}: "
        self.pub_image = self.create_publisher(Image, "image", SENSOR_QOS)
        self.pub_battery = self.create_publisher(BatteryState, "battery_state", 10)
        out = f"{node_name}/"
        self.create_subscription(Image, out + "labels", self._on_labels, LABELS_QOS)
        self.create_subscription(Float32, out + "width", self._on_width, LATCHED_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.create_timer(1.0 / camera_fps, self._publish_frame)
        self.create_timer(0.2, self._publish_battery)
        self.create_timer(0.25, self._sample)

    # -- camera and battery -------------------------------------------------------------------------
    def _frame_msg(self, rgb: np.ndarray) -> Image:
        msg = fill_image(Image(), np.ascontiguousarray(rgb), "rgb8")
        msg.header.frame_id = "camera"
        return msg

    def _publish_frame(self) -> None:
        if not self.camera_on:
            return
        frame = (self._tick // self._hold) % len(self._frames)
        self._tick += 1
        msg = self._frames[frame]
        msg.header.stamp = self.get_clock().now().to_msg()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self._stamp_index[stamp] = len(self.rec.publish_t)
            self.rec.publish_t.append(self.elapsed())
            self.rec.publish_frame.append(frame)
        self.pub_image.publish(msg)

    def stop_camera(self) -> None:
        """Stop publishing frames (before the node is stopped, so it can finish the last one)."""
        self.camera_on = False
        self.rec.camera_stop = self.elapsed()

    def _publish_battery(self) -> None:
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.percentage = float("nan") if self.battery is None else float(self.battery)
        msg.present = True
        msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
        self.pub_battery.publish(msg)

    # -- outputs of slimseg_node --------------------------------------------------------------------
    def _on_labels(self, msg: Image) -> None:
        now = self.elapsed()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latency = self.get_clock().now().nanoseconds * 1e-9 - stamp * 1e-9
        _, labels = image_samples(msg)  # mono8 class ids
        ok, png = cv2.imencode(".png", np.ascontiguousarray(labels), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        with self._lock:
            index = self._stamp_index.get(stamp)
            if index is None:  # not a frame of this driver (another publisher on the topic)
                return
            self.rec.label_index.append(index)
            self.rec.label_t.append(now)
            self.rec.label_png.append(png.tobytes() if ok else b"")
            self._recent_latency.append(latency)

    def _on_width(self, msg: Float32) -> None:
        width = round(float(msg.data), 4)
        with self._lock:
            if width != self.width:
                event = WidthEvent(self.elapsed(), width, self.width, self.battery, self.phase)
                self.rec.widths.append(event)
            self.width = width

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.startswith(self._diag_name):
                continue
            values = {kv.key: kv.value for kv in status.values}
            record: dict = {"t": self.elapsed()}
            for key, kind in DIAG_KEYS.items():
                try:
                    record[key] = kind(values[key])
                except (KeyError, ValueError):  # "n/a" before the first measurement, or an older node
                    record[key] = None
            with self._lock:
                self.rec.diagnostics.append(record)

    # -- ~/enable spans ------------------------------------------------------------------------------
    def paused(self, paused: bool) -> None:
        """Record a span with ~/enable false: call with True before the pause request, False after resume."""
        with self._lock:
            if paused:
                self.rec.disabled.append([self.elapsed(), math.inf])
            elif self.rec.disabled and self.rec.disabled[-1][1] == math.inf:
                self.rec.disabled[-1][1] = self.elapsed()

    # -- bookkeeping -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the driver started (the x axis of every picture)."""
        return time.monotonic() - self._t0

    def stats(self) -> dict:
        """What the live view, the timeline and the animation's stamps show at this moment.

        Before the first label map, `width`, `fps_out` and `latency_ms` are None: the node is still starting;
        `latency_ms` is None too while no label map came in the last second (paused).
        """
        now = self.elapsed()
        with self._lock:
            fps_in = sum(1 for t in self.rec.publish_t[-64:] if now - t <= 1.0)
            fps_out = sum(1 for t in self.rec.label_t[-64:] if now - t <= 1.0)
            started = bool(self.rec.label_t)
            # a latency only while labels arrive: a paused node has no current latency, not the last one
            recent = fps_out and self._recent_latency
            latency = float(np.median(self._recent_latency)) * 1e3 if recent else None
            return {
                "t": now, "phase": self.phase, "policy": self.policy, "battery": self.battery,
                "width": self.width if started else None, "fps_in": float(fps_in),
                "fps_out": float(fps_out) if started else None, "latency_ms": latency,
                "target_fps": self.target_fps, "published": self.rec.published, "received": self.rec.received,
            }

    def _sample(self) -> None:
        sample = self.stats()
        with self._lock:
            self.rec.samples.append(sample)
