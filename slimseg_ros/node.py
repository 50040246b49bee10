"""The `slimseg_node` ROS 2 node: camera frames in, class-id label maps out, width chosen at run time.

Contract: ../shared/docs/ros_interface.md; user guide: docs/node.md. A managed (lifecycle) node, as Nav2's:
configure loads the manifest and every width's session, activate starts inference and enables the
publishers, deactivate drains and stops it (frames arriving while inactive are counted), cleanup frees the
sessions. `autostart` (default true) runs configure and activate at start, so one command still starts it.
Callbacks only hand the newest frame to a worker thread (inference never blocks the executor); the worker
decodes, runs the backend at the width the policy chose, publishes, and feeds the frame's latency to the
policy, whose decision applies to the next frame. All widths are loaded at configure (by the backend), so a
switch allocates nothing. Imports no torch.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import BatteryState, CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, String
from std_srvs.srv import SetBool

from slimseg_ros import params as P
from slimseg_ros import resize
from slimseg_ros.backends import Backend, create_backend
from slimseg_ros.errors import SlimsegError
from slimseg_ros.image_codec import (
    DECODER,
    ImageBuffer,
    check_pixels,
    compressed_to_rgb,
    image_to_rgb,
)
from slimseg_ros.manifest import Manifest
from slimseg_ros.policy import PARAMETERS, Decision, Observation, WidthPolicy, default_thresholds, make_policy
from slimseg_ros.qos import LABELS_QOS, LATCHED_QOS, OUTPUT_QOS, RELIABLE_INPUT_QOS, SENSOR_QOS
from slimseg_ros.resize import Fit
from slimseg_ros.shutdown import ignore_signals, restore_signals, stop_on_signals
from slimseg_ros.stats import LatencyWindow, RateMeter, SequenceGaps
from slimseg_ros.visualize import colorize, make_palette, overlay
from slimseg_ros.worker import NewestFrameWorker

try:  # optional: vision_msgs is not in the ROS 2 wheels set
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:  # pragma: no cover - depends on the ROS install
    LabelInfo = VisionClass = None

POLICY_PARAMS = {"policy", "width", *P.POLICY_ARGS}
INFO_PARAMS = ("info.class_names", "info.class_ids", "info.widths")
DRAIN_TIMEOUT_S = 10.0  # deactivate waits this long for the frame in progress (and a waiting one)


@dataclass
class Frame:
    """A received message and when it arrived (monotonic s), as handed to the worker."""

    msg: Image | CompressedImage
    compressed: bool
    receipt: float


class Counters:
    """Frame counts for diagnostics; each field is written by one thread only, so no lock is needed."""

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.superseded = 0  # replaced by a newer frame before the worker got to it
        self.invalid = 0  # unsupported encoding or undecodable data
        self.failed = 0  # inference or publishing raised
        self.paused = 0  # arrived while ~/enable was false
        self.throttled = 0  # skipped by max_rate_hz
        self.inactive = 0  # arrived while the lifecycle state was inactive (configured, not active)
        self.switches = 0
        self.gaps = SequenceGaps()  # frames lost before the node, from publishers' sequence numbers
        self.rmw_lost: dict[str, int] = {}  # input topic -> the RMW's message-lost event total
        self.incompatible_qos = 0  # publishers the input subscription cannot match (QoS)

    @property
    def lost_rmw(self) -> int:
        """Frames the RMW reported lost (message-lost events), all input subscriptions together."""
        return sum(self.rmw_lost.values())

    @property
    def dropped(self) -> int:
        """Frames received while active and enabled that gave no labels (throttled ones are by request)."""
        return self.superseded + self.invalid + self.failed


def battery_observation(msg: BatteryState) -> tuple[float | None, bool | None]:
    """BatteryState -> (fraction or None when unknown/NaN, charging or None when unknown)."""
    level = float(msg.percentage)
    fraction = None if math.isnan(level) else level
    status = msg.power_supply_status
    if status in (BatteryState.POWER_SUPPLY_STATUS_CHARGING, BatteryState.POWER_SUPPLY_STATUS_FULL):
        return fraction, True
    if status in (
        BatteryState.POWER_SUPPLY_STATUS_DISCHARGING,
        BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING,
    ):
        return fraction, False
    return fraction, None


def labels_camera_info(
    info: CameraInfo, frame: tuple[int, int], geometry: Fit | None = None
) -> CameraInfo:
    """camera_info that describes the published labels.

    Labels at the frame's (height, width): the input's camera_info, unchanged (scaled only when it was
    calibrated at another size than the frame's). Labels at the network size (`geometry`, any resize mode):
    K, P and the ROI mapped by the frame -> network fit (scale, plus the letterbox pad or crop offset).
    """
    out = copy.copy(info)
    affine = np.eye(3)
    if info.height and info.width and (info.height, info.width) != tuple(frame):
        affine = np.diag([frame[1] / info.width, frame[0] / info.height, 1.0])
    height, width = frame
    if geometry is not None:
        affine = geometry.affine @ affine
        height, width = geometry.network
    if np.array_equal(affine, np.eye(3)):
        return out
    k, p = resize.map_intrinsics(info.k, info.p, affine)
    out.k, out.p = k.ravel(), p.ravel()
    out.height, out.width = height, width
    roi = copy.copy(info.roi)
    if roi.width and roi.height:  # a zero ROI means the full image: it stays so
        box = (roi.x_offset, roi.y_offset, roi.x_offset + roi.width, roi.y_offset + roi.height)
        x0, y0, x1, y1 = resize.map_box(box, affine, (height, width))
        roi.x_offset, roi.y_offset, roi.width, roi.height = x0, y0, x1 - x0, y1 - y0
    out.roi = roi
    return out


class SlimsegNode(LifecycleNode):
    """Segments each newest frame at the width the policy picks; see the module docstring.

    Lifecycle: unconfigured (parameters only) -> configure -> inactive (backend loaded, topics exist, frames
    counted but not processed, /diagnostics on) -> activate -> active (inference) -> deactivate -> inactive
    -> cleanup -> unconfigured. A failed configure logs the reason and returns FAILURE: the node stays
    unconfigured, its configure-time parameters can be fixed and configure tried again.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(P.NODE_NAME, **kwargs)
        self._declare_parameters(P.load_defaults())
        try:
            autostart = P.check_node_param("autostart", self.get_parameter("autostart").value)
        except ValueError as exc:
            raise SlimsegError(f"parameter {exc}", "pass autostart:=true or autostart:=false") from exc
        self.backend: Backend | None = None
        self.worker: NewestFrameWorker[Frame] | None = None
        self.counters = Counters()
        self._lock = threading.Lock()
        self._closed = False
        self._configured = False  # resources of configure exist (inactive or active)
        self._active = False  # frames are handed to the worker
        self._output = False  # the worker may publish (false once a deactivate has drained it)
        self._declaring_info = False
        self._entities: list[tuple[Callable[[Any], Any], Any]] = []  # (destroy, entity) made at configure
        self._last_error = ""
        self._inactive_logged = False
        self.finished: Future = Future()  # done once the node reaches finalized (shutdown transition)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if autostart:
            self._autostart()

    def _autostart(self) -> None:
        """configure + activate, as a lifecycle manager would; a failure leaves the node unconfigured."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            name = self.get_fully_qualified_name()
            self.get_logger().error(
                "autostart: configure failed (reason above); the node stays unconfigured. Fix the parameter "
                f"(ros2 param set {name} manifest ...), then `ros2 lifecycle set {name} configure` and "
                "`... activate`"
            )
            return
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("autostart: activate failed (reason above)")

    # --- lifecycle transitions (executor thread) ------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read and check the parameters, load the manifest and every width, create the topics."""
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - any failure must leave the node unconfigured, alive
            self._release()
            detail = str(exc) if isinstance(exc, SlimsegError) else f"{type(exc).__name__}: {exc}"
            self._last_error = detail
            message = f"configure failed: {detail}; still unconfigured"
            if not isinstance(exc, SlimsegError):  # unexpected: keep the traceback for a bug report
                message += "\n" + traceback.format_exc()
            self.get_logger().error(message)
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, latch class info and width, start the worker: inference runs."""
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._publish_latched()
        self.worker = NewestFrameWorker(
            self._process, on_drop=self._on_superseded, on_error=self._on_worker_error
        )
        self._output = self._active = True
        self._inactive_logged = False
        self.get_logger().info(f"active: width {self.width:g}, policy {self._values['policy']}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop accepting frames, let the worker finish what it holds (published), then disable output."""
        self._active = False  # frames from now on are counted as inactive
        self._stop_worker(drain=True)
        self._output = False
        self.get_logger().info("inactive: inference stopped; arriving frames are counted (frames_inactive)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the sessions and destroy the topics, services and timers made by configure."""
        self._release()
        self.get_logger().info("unconfigured: backend sessions freed")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state: stop (draining when active), free everything, then let main() return."""
        if self._active:
            self._active = False
            self._stop_worker(drain=True)
            self._output = False
        self._release()
        self.get_logger().info(f"finalized (shutdown from {state.label})")
        if not self.finished.done():
            self.finished.set_result(state.label)
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: free everything and go back to unconfigured (configure can be retried)."""
        self._active = self._output = False
        self._release()
        self.get_logger().error(f"error in a transition from {state.label}: resources freed, unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self, drain: bool) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        if drain and not worker.wait_idle(DRAIN_TIMEOUT_S):
            self.get_logger().warning(
                f"the frame in progress did not finish within {DRAIN_TIMEOUT_S:g} s; it is counted as failed"
            )
        worker.stop()

    def _release(self) -> None:
        """Undo configure (idempotent): worker, backend sessions, topics/services/timers, info parameters."""
        self._stop_worker(drain=False)
        self._configured = False
        for destroy, entity in reversed(self._entities):
            try:
                destroy(entity)
            except Exception as exc:  # noqa: BLE001 - cleanup must go on (e.g. context already shut down)
                self.get_logger().debug(f"destroying {entity}: {exc}")
        self._entities.clear()
        for name in INFO_PARAMS:
            if self.has_parameter(name):
                self.undeclare_parameter(name)
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()

    # --- configure ---------------------------------------------------------------------------------------
    def _declare_parameters(self, defaults: dict[str, Any]) -> None:
        for spec in P.SPECS:
            later = " (read at configure: set it while unconfigured)" if spec.read_only else ""
            text = spec.description + later
            descriptor = ParameterDescriptor(description=text, dynamic_typing=True)
            self.declare_parameter(spec.name, defaults[spec.name], descriptor)

    def _declared_values(self) -> dict[str, Any]:
        """The parameters' current values that are valid on their own (for checks across parameters)."""
        values = {}
        for spec in P.SPECS:
            try:
                values[spec.name] = P.check_node_param(spec.name, self.get_parameter(spec.name).value)
            except ValueError:
                continue
        return values

    def _read_parameters(self) -> dict[str, Any]:
        """Every parameter checked on its own and together; any invalid one fails configure."""
        values = {}
        hint = "set a valid value, then configure again"
        for spec in P.SPECS:
            raw = self.get_parameter(spec.name).value
            try:
                values[spec.name] = P.check_node_param(spec.name, raw)
            except ValueError as exc:
                raise SlimsegError(f"parameter {exc}", hint) from exc
        try:
            P.check_all(values)
        except ValueError as exc:
            raise SlimsegError(f"parameters: {exc}", hint) from exc
        return values

    def _configure(self) -> None:
        values = self._read_parameters()
        if not values["manifest"]:
            raise SlimsegError(
                "parameter 'manifest' is empty",
                "pass it: --ros-args -p manifest:=/path/to/manifest.yaml (or launch with manifest:=...)",
            )
        self.manifest = Manifest.load(values["manifest"])
        # threads and spin exist for the onnxruntime backends only; auto hands them to those it tries
        ort = values["backend"] == "auto" or values["backend"].startswith("onnxruntime")
        options = {"threads": values["threads"], "spin": values["spin"]} if ort else {}
        self.backend = create_backend(
            values["backend"], self.manifest, device=values["device"] or None, **options
        )
        warm = self.backend.warm_up()  # no width pays its first-run cost on a live frame after a switch
        self.get_logger().info(
            "warm-up: " + ", ".join(f"width {w:g} {1e3 * s:.0f} ms" for w, s in warm.items())
        )
        self.counters = Counters()
        self._enabled = True
        self._battery: float | None = None
        self._charging: bool | None = None
        self._camera_info: CameraInfo | None = None
        self._last_accept = -math.inf
        self._last_error = ""
        self._reported = (0, 0)  # (bad, lost) frames at the last diagnostics report
        self._start(values)
        self._configured = True

    def _fit_to_widths(self, values: dict[str, Any], widths: list[float]) -> dict[str, Any]:
        """The one start-up fallback: values valid in themselves that the loaded model cannot honour
        (`width` not usable, e.g. its file is corrupt; `battery_thresholds` not one per usable width above
        the narrowest) are replaced with a warning, and the parameters are set to the values in use, so
        what the node reports is what it runs with and later changes are checked against them."""
        log = self.get_logger()
        fitted = dict(values)
        try:
            fitted["width"] = P.match_width(values["width"], widths)
        except ValueError as exc:
            fitted["width"] = max([w for w in widths if w <= values["width"]] or [widths[0]])
            log.warning(f"{exc}; starting at {fitted['width']:g} (parameter width set to it)")
        if len(values["battery_thresholds"]) != len(widths) - 1:
            fitted["battery_thresholds"] = default_thresholds(len(widths))
            log.warning(
                f"battery_thresholds {values['battery_thresholds']} do not fit the {len(widths)} usable "
                f"widths; using evenly spaced {fitted['battery_thresholds']} (parameter set to them)"
            )
            try:  # evenly spaced thresholds can conflict with a large hysteresis
                P.check_all(fitted)
            except ValueError as exc:
                hint = "set battery_thresholds for the usable widths"
                raise SlimsegError(f"parameters: {exc}", hint) from exc
        names = [k for k in ("width", "battery_thresholds") if fitted[k] != values[k]]
        changed = [Parameter(k, value=fitted[k]) for k in names]
        if changed:
            results = self.set_parameters(changed)
            failed = [r.reason for r in results if not r.successful]
            if failed:
                raise SlimsegError(f"cannot set the fallback values: {'; '.join(failed)}")
        return fitted

    def _track(self, destroy: Callable[[Any], Any], entity: Any) -> Any:
        """Remember an entity made by configure so cleanup destroys it."""
        self._entities.append((destroy, entity))
        return entity

    def _start(self, values: dict[str, Any]) -> None:
        log = self.get_logger()
        assert self.backend is not None
        for width, reason in sorted(self.backend.disabled.items()):
            log.warning(f"width {width:g} disabled: {reason}")
        widths = self.backend.widths
        values = self._values = self._fit_to_widths(values, widths)
        self._costs = self._manifest_costs(widths)  # before the first policy, which uses them
        try:
            self.policy: WidthPolicy = self._build_policy(values, values["width"])
        except ValueError as exc:
            raise SlimsegError(f"policy '{values['policy']}': {exc}", "fix the policy parameters") from exc
        self._pending: tuple[WidthPolicy, str] | None = None
        self.width = self.policy.width

        self.palette = make_palette(self.manifest.colors)
        # letterbox padding at the normalisation mean reaches the network as zeros; crop margins get void
        norm = self.manifest.normalization
        self._pad_value = tuple(int(round(v)) for v in norm[0]) if norm else (0, 0, 0)
        self._void = self.manifest.ignore_index if 0 <= self.manifest.ignore_index <= 255 else 255
        self._fit: Fit | None = None
        # outgoing images written in place frame after frame (visualize / image_codec: no per-frame copies)
        self._void_color = tuple(int(v) for v in self.palette[self._void])
        self._out = {name: ImageBuffer(Image, enc) for name, enc in
                     (("labels", "mono8"), ("color", "rgb8"), ("overlay", "rgb8"))}
        self.in_rate, self.out_rate = RateMeter(), RateMeter()
        self.lat_stamp, self.lat_receipt, self.lat_infer = LatencyWindow(), LatencyWindow(), LatencyWindow()

        # outputs: lifecycle publishers, silent until activate enables them
        def lifecycle_pub(msg_type: Any, topic: str, qos: QoSProfile) -> Any:
            pub = self.create_lifecycle_publisher(msg_type, topic, qos)
            return self._track(self.destroy_lifecycle_publisher, pub)

        self.pub_labels = lifecycle_pub(Image, "~/labels", LABELS_QOS)
        self.pub_color = lifecycle_pub(Image, "~/color", OUTPUT_QOS)
        self.pub_overlay = lifecycle_pub(Image, "~/overlay", OUTPUT_QOS)
        self.pub_info = lifecycle_pub(CameraInfo, "~/camera_info", LABELS_QOS)
        self.pub_width = lifecycle_pub(Float32, "~/width", LATCHED_QOS)
        self.pub_classes = lifecycle_pub(String, "~/class_info", LATCHED_QOS)
        self.pub_label_info = lifecycle_pub(LabelInfo, "~/label_info", LATCHED_QOS) if LabelInfo else None
        # /diagnostics is a plain publisher: an inactive node still reports its state and counts
        self.pub_diag = self._track(
            self.destroy_publisher, self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        )
        self._declare_info_parameters()

        # inputs exist from configure on, so frames arriving while inactive are counted, not lost unseen
        qos = RELIABLE_INPUT_QOS if values["reliable_qos"] else SENSOR_QOS

        def subscribe_frames(msg_type: Any, topic: str, callback: Callable[..., None]) -> None:
            events = SubscriptionEventCallbacks(
                message_lost=lambda event: self._on_message_lost(topic, event),
                incompatible_qos=self._on_incompatible_qos,
            )
            try:
                sub = self.create_subscription(msg_type, topic, callback, qos, event_callbacks=events)
            except Exception as exc:  # noqa: BLE001 - an RMW without these events: sequence gaps still count
                log.warning(f"{topic}: the RMW offers no message-lost events ({exc}); sequence gaps only")
                sub = self.create_subscription(msg_type, topic, callback, qos)
            self._track(self.destroy_subscription, sub)

        subscribe = self.create_subscription
        subscribe_frames(Image, "image", self._on_image)
        if values["compressed"]:
            subscribe_frames(CompressedImage, "image/compressed", self._on_compressed)
        self._track(
            self.destroy_subscription, subscribe(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS)
        )
        self._track(
            self.destroy_subscription, subscribe(BatteryState, "battery_state", self._on_battery, SENSOR_QOS)
        )
        self._track(self.destroy_service, self.create_service(SetBool, "~/enable", self._on_enable))
        self._track(
            self.destroy_timer, self.create_timer(values["diagnostics_period_s"], self._publish_diagnostics)
        )
        log.info(
            f"configured: {self.backend.describe()}; policy {values['policy']} at width {self.width:g}; "
            f"input QoS {'reliable' if values['reliable_qos'] else 'sensor data'}; "
            f"resize {values['resize_mode']}; image decoder {DECODER}"
            + ("; compressed input on" if values["compressed"] else "")
        )

    def _manifest_costs(self, widths: list[float]) -> list[float] | None:
        """Relative cost per width for the fps policy's first guesses, best evidence first.

        Latency measured on this backend (`slimseg bench --update-manifest`) beats FLOPs, which overstate
        how much slower wide widths run (fixed per-layer overheads); FLOPs beat plain width ratios.
        """
        for read in (lambda w: self.manifest.latency_ms(w, self.backend.name), self.manifest.flops):
            try:
                costs = [float(read(w) or 0) for w in widths]
            except (SlimsegError, TypeError, ValueError, AttributeError):
                continue
            if all(c > 0 for c in costs):
                return costs
        return None

    def _build_policy(self, values: dict[str, Any], width: float) -> WidthPolicy:
        name = values["policy"]
        accepted = PARAMETERS[name]
        kwargs = P.policy_kwargs(name, values, width, accepted)
        if "costs" in accepted:
            kwargs["costs"] = self._costs
        return make_policy(name, self.backend.widths, **kwargs)

    def _declare_info_parameters(self) -> None:
        """Class metadata as parameters; read-only to users (the set-parameters callback refuses them)."""
        assert self.backend is not None
        classes = self.manifest.classes
        described = ParameterDescriptor(description="from the manifest (informational, read-only)")
        self._declaring_info = True
        try:
            self.declare_parameter("info.class_names", [c.name for c in classes], described)
            self.declare_parameter("info.class_ids", [c.id for c in classes], described)
            self.declare_parameter("info.widths", [float(w) for w in self.backend.widths], described)
        finally:
            self._declaring_info = False

    def _publish_latched(self) -> None:
        """~/class_info, ~/label_info and ~/width, latched: published when the publishers are enabled."""
        assert self.backend is not None
        info = {
            "classes": self.manifest.class_table(),
            "ignore_index": self.manifest.ignore_index,
            "widths": self.backend.widths,
            "disabled": {f"{w:g}": r for w, r in self.backend.disabled.items()},
            "backend": self.backend.name,
            "input_size": list(self.backend.input_size),
        }
        self.pub_classes.publish(String(data=json.dumps(info)))
        if self.pub_label_info is not None:
            msg = LabelInfo(threshold=0.0)
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.class_map = [VisionClass(class_id=c.id, class_name=c.name) for c in self.manifest.classes]
            self.pub_label_info.publish(msg)
        self.pub_width.publish(Float32(data=float(self.width)))

    # --- callbacks (executor thread): never block ----------------------------------------------------
    # Two required arguments: rclpy then hands over the MessageInfo (publisher gid and sequence number).
    def _on_image(self, msg: Image, info: Any) -> None:
        self._accept(msg, compressed=False, info=info)

    def _on_compressed(self, msg: CompressedImage, info: Any) -> None:
        self._accept(msg, compressed=True, info=info)

    def _on_message_lost(self, topic: str, event: Any) -> None:
        """The RMW's count of messages it knows it lost on an input (e.g. Fast DDS best-effort fragments)."""
        self.counters.rmw_lost[topic] = int(event.total_count)
        self.get_logger().warning(
            f"{topic}: {event.total_count} frames lost in the middleware (message-lost events); large frames "
            "on best-effort QoS: see docs/node.md, Transports",
            throttle_duration_sec=self._values["diagnostics_period_s"],
        )

    def _on_incompatible_qos(self, event: Any) -> None:
        """A publisher on an input that this subscription cannot match: its frames never arrive."""
        self.counters.incompatible_qos = int(event.total_count)
        self.get_logger().error(
            f"an input publisher has an incompatible QoS ({event.last_policy_kind}): its frames never "
            "arrive; reliable_qos:=true needs a reliable publisher",
            throttle_duration_sec=self._values["diagnostics_period_s"],
        )

    def _accept(self, msg: Image | CompressedImage, compressed: bool, info: Any = None) -> None:
        now = time.monotonic()
        self.counters.received += 1
        if info is not None:  # rclpy MessageInfo: the publisher's sequence number reveals skipped frames
            sequence = info.get("publication_sequence_number")
            sequence = sequence if type(sequence) is int else 0
            self.counters.gaps.observe(str(info.get("publisher_gid")), sequence)
        self.in_rate.tick(now)
        if not self._active:  # configured, not active: counted, reported, not processed
            self.counters.inactive += 1
            if not self._inactive_logged:
                self._inactive_logged = True
                self.get_logger().info("frames arrive while inactive: counted (frames_inactive), unprocessed")
            return
        if not self._enabled:
            self.counters.paused += 1
            return
        max_rate = self._values["max_rate_hz"]
        if max_rate > 0 and now - self._last_accept < 1.0 / max_rate:
            self.counters.throttled += 1
            return
        self._last_accept = now
        self.worker.submit(Frame(msg, compressed, now))

    def _on_superseded(self, frame: Frame) -> None:
        self.counters.superseded += 1

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_battery(self, msg: BatteryState) -> None:
        self._battery, self._charging = battery_observation(msg)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._enabled = bool(request.data)
        response.success = True
        response.message = "inference running" if self._enabled else "inference paused"
        self.get_logger().info(response.message + " (~/enable)")
        return response

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        """Validate a run-time change; a policy change is built here and swapped in before the next frame."""
        changes: dict[str, Any] = {}
        for param in parameters:
            if param.name in INFO_PARAMS and not self._declaring_info:
                return SetParametersResult(
                    successful=False, reason=f"{param.name} is read-only: it comes from the manifest"
                )
            spec = P.SPEC_BY_NAME.get(param.name)
            if spec is None:
                continue
            if param.name == "autostart":
                return SetParametersResult(successful=False, reason="autostart is read-only: used at start")
            if spec.read_only and self._configured:
                return SetParametersResult(
                    successful=False,
                    reason=f"{param.name} is read-only while configured: it is read at configure "
                    "(deactivate, cleanup, set it, configure again; or restart the node)",
                )
            try:
                changes[param.name] = P.check_node_param(param.name, param.value)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if not changes:
            return SetParametersResult(successful=True)
        values = {**(self._values if self._configured else self._declared_values()), **changes}
        try:  # every rule, whatever the active policy, so a later policy change finds valid values
            P.check_all(values, self.backend.widths if self._configured else None)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if not self._configured:  # unconfigured: the values are read at configure
            return SetParametersResult(successful=True)
        assert self.backend is not None
        if POLICY_PARAMS & set(changes):
            try:
                if "width" in changes:
                    values["width"] = width = P.match_width(changes["width"], self.backend.widths)
                else:
                    width = values["width"] if values["policy"] == "fixed" else self.width
                policy = self._build_policy(values, width)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            what = ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
            with self._lock:
                self._pending = (policy, f"parameter change ({what})")
        self._values = values
        return SetParametersResult(successful=True)

    # --- worker thread -------------------------------------------------------------------------------
    def _process(self, frame: Frame) -> None:
        start = time.monotonic()
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.policy = pending[0]
            self._apply(Decision(self.policy.width, pending[1], self.policy.width != self.width))
        limit = self._values["max_input_pixels"]
        try:
            if frame.compressed:
                rgb = compressed_to_rgb(frame.msg, max_pixels=limit)
            else:
                check_pixels(int(frame.msg.width), int(frame.msg.height), limit, "frame")
                rgb = image_to_rgb(frame.msg)
        except SlimsegError as exc:
            self.counters.invalid += 1
            self._last_error = str(exc)
            self.get_logger().error(
                f"frame dropped: {exc}", throttle_duration_sec=self._values["diagnostics_period_s"]
            )
            return
        geometry = self._geometry(rgb.shape[:2])
        network_input = resize.to_network(rgb, geometry, self._pad_value)
        t_infer = time.monotonic()
        labels = self.backend.infer(network_input, self.width)  # already at the input size: no resize
        self.lat_infer.add(time.monotonic() - t_infer)
        if not self._output:  # a deactivate gave up waiting for this frame: its publishers are off
            raise SlimsegError("deactivated while this frame was processed: labels not published")
        self._publish_outputs(frame.msg.header, rgb, network_input, geometry, labels)

        done = time.monotonic()
        self.counters.processed += 1
        self._last_error = ""  # a good frame: diagnostics recover to OK (the drop counters keep the history)
        self.out_rate.tick(done)
        self.lat_receipt.add(done - frame.receipt)
        stamp = frame.msg.header.stamp
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        if stamp_ns > 0:
            self.lat_stamp.add((self.get_clock().now().nanoseconds - stamp_ns) * 1e-9)
        obs = Observation(now=done, latency_s=done - start, battery=self._battery, charging=self._charging)
        self._apply(self.policy.update(obs))

    def _geometry(self, frame: tuple[int, int]) -> Fit:
        """The frame -> network fit for the current resize_mode, recomputed only when size or mode change."""
        mode = self._values["resize_mode"]
        cached = self._fit
        if cached is None or cached.frame != tuple(frame) or cached.mode != mode:
            cached = self._fit = resize.fit(frame, self.backend.input_size, mode)
        return cached

    def _publish_outputs(
        self, header: Any, rgb: np.ndarray, network_input: np.ndarray, geometry: Fit, labels: np.ndarray
    ) -> None:
        """Labels and camera_info at the frame's or the network's size; colour and overlay, when someone
        subscribes, at the size `visualization_size` names.

        Each label map is resized once, straight into its message buffer. Colours are looked up at the
        network size; at the frame's size they are then upsampled once (the same pixels as colourising the
        frame-size labels), at the network's the overlay blends them over the image the network saw.
        """
        at_network = self._values["labels_at_network_size"]
        out = self._out["labels"]
        network_labels = None  # the labels at the network's size, made once for ~/labels and ~/color
        if at_network:
            network_labels = out.pixels(geometry.network)
            network_labels[...] = resize.labels_at_network(labels, geometry, self._void)
        else:
            resize.labels_to_frame(labels, geometry, self._void, out=out.pixels(geometry.frame))
        self.pub_labels.publish(out.message(header))
        info = self._camera_info
        if info is not None:
            adjusted = labels_camera_info(info, geometry.frame, geometry if at_network else None)
            adjusted.header = header
            self.pub_info.publish(adjusted)
        want_color = self.pub_color.get_subscription_count() > 0
        want_overlay = self.pub_overlay.get_subscription_count() > 0
        if not (want_color or want_overlay):
            return
        if self._values["visualization_size"] == "network":
            shape, image = (*geometry.network, 3), network_input
            if network_labels is None:
                network_labels = resize.labels_at_network(labels, geometry, self._void)
            color = colorize(network_labels, self.palette, out=self._out["color"].pixels(shape))
        else:
            shape, image = (*geometry.frame, 3), rgb
            color = resize.labels_to_frame(colorize(labels, self.palette), geometry, self._void_color,
                                           out=self._out["color"].pixels(shape))
        if want_color:
            self.pub_color.publish(self._out["color"].message(header))
        if want_overlay:
            overlay(image, color, self._values["overlay_alpha"], out=self._out["overlay"].pixels(shape))
            self.pub_overlay.publish(self._out["overlay"].message(header))

    def _apply(self, decision: Decision) -> None:
        """Adopt the policy's width for the next frame; log and latch every switch with its reason."""
        if not decision.changed or decision.width == self.width:
            return
        old, self.width = self.width, decision.width
        self.counters.switches += 1
        self.pub_width.publish(Float32(data=float(self.width)))
        self.get_logger().info(f"width {old:g} -> {self.width:g}: {decision.reason}")

    def _on_worker_error(self, frame: Frame, exc: BaseException) -> None:
        self.counters.failed += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._closed:
            return
        self.get_logger().error(
            f"frame dropped, processing failed: {self._last_error}",
            throttle_duration_sec=self._values["diagnostics_period_s"],
        )

    # --- diagnostics ---------------------------------------------------------------------------------
    def diagnostics_values(self) -> dict[str, str]:
        """Key/values of the /diagnostics status (also used by tests and the benchmark)."""
        c = self.counters
        stamp50, stamp95 = self.lat_stamp.percentiles_ms(50, 95)
        rec50, rec95 = self.lat_receipt.percentiles_ms(50, 95)
        inf50, inf95 = self.lat_infer.percentiles_ms(50, 95)

        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        battery = "unknown" if self._battery is None else f"{self._battery:.3f}"
        charging = "unknown" if self._charging is None else str(self._charging).lower()
        loop = getattr(self.policy, "fps", self.policy)  # the fps loop, alone or inside budget
        acted = getattr(loop, "last_p50_s", None)
        budget = getattr(loop, "budget_s", None)
        return {
            "lifecycle_state": "active" if self._active else "inactive",
            "enabled": str(self._enabled).lower(),
            "width": f"{self.width:g}",
            "policy": self._values["policy"],
            "resize_mode": self._values["resize_mode"],
            "image_decoder": DECODER,
            "backend": self.backend.name,
            "widths": ",".join(f"{w:g}" for w in self.backend.widths),
            "disabled_widths": ",".join(f"{w:g}" for w in sorted(self.backend.disabled)),
            "input_rate_hz": f"{self.in_rate.rate():.2f}",
            "output_rate_hz": f"{self.out_rate.rate():.2f}",
            "latency_from_stamp_p50_ms": ms(stamp50),
            "latency_from_stamp_p95_ms": ms(stamp95),
            "latency_from_receipt_p50_ms": ms(rec50),
            "latency_from_receipt_p95_ms": ms(rec95),
            "inference_p50_ms": ms(inf50),
            "inference_p95_ms": ms(inf95),
            "policy_p50_ms": ms(None if acted is None else 1e3 * acted),
            "policy_budget_ms": ms(None if budget is None else 1e3 * budget),
            "frames_received": str(c.received),
            "frames_processed": str(c.processed),
            "drops": str(c.dropped),
            "drops_superseded": str(c.superseded),
            "drops_invalid": str(c.invalid),
            "drops_failed": str(c.failed),
            "frames_paused": str(c.paused),
            "frames_throttled": str(c.throttled),
            "frames_inactive": str(c.inactive),
            "frames_lost_before_node": str(c.gaps.lost) if c.gaps.supported else "unknown",
            "frames_lost_rmw_reported": str(c.lost_rmw),
            "incompatible_qos_publishers": str(c.incompatible_qos),
            "width_switches": str(c.switches),
            "battery": battery,
            "charging": charging,
            "last_error": self._last_error,
        }

    def _recent_problems(self) -> list[str]:
        """What makes this period's status WARN: bad frames or lost frames since the last report (or a bad
        frame not yet followed by a good one), disabled widths, incompatible publishers. Old problems stay
        in the counters but no longer hold the level at WARN."""
        c = self.counters
        now = (c.invalid + c.failed, c.gaps.lost + c.lost_rmw)
        before, self._reported = self._reported, now
        problems = []
        if now[0] > before[0] or self._last_error:
            problems.append(f"{now[0] - before[0]} bad frames ({self._last_error or 'recovered'})")
        if now[1] > before[1]:
            problems.append(f"{now[1] - before[1]} frames lost before the node")
        if c.incompatible_qos:
            problems.append("an input publisher has an incompatible QoS")
        if self.backend.disabled:
            problems.append("widths disabled")
        return problems

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics_values()
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: segmentation", hardware_id=self.backend.name
        )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        if not self._active:
            status.level = DiagnosticStatus.WARN
            status.message = f"inactive (lifecycle): {self.counters.inactive} frames counted, not processed"
        elif not self._enabled:
            status.level, status.message = DiagnosticStatus.WARN, "paused (~/enable false)"
        elif problems := self._recent_problems():
            status.level = DiagnosticStatus.WARN
            status.message = f"width {values['width']}, {values['output_rate_hz']} Hz; " + "; ".join(problems)
        else:
            status.level = DiagnosticStatus.OK
            status.message = (
                f"width {values['width']} ({values['policy']}), {values['output_rate_hz']} Hz out"
            )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)

    def close(self) -> None:
        """Free the worker and the backend without a transition (process exit, context gone); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._active = self._output = False
        self._stop_worker(drain=False)
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()


def main(args: list[str] | None = None) -> int:
    """`slimseg_node` console entry: spin until Ctrl-C / SIGTERM or the shutdown transition, exit cleanly.

    One shutdown path, clean at any instant: rclpy's own signal handlers are off (they shut the context
    down under a node still being built, which raised RCLError during start-up); SIGINT and SIGTERM raise
    KeyboardInterrupt in the main thread instead (slimseg_ros.node_entry installs that before importing
    ROS), and whatever was built so far is freed with further signals ignored.
    """
    previous = stop_on_signals()
    node: SlimsegNode | None = None
    executor: SingleThreadedExecutor | None = None
    code = 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = SlimsegNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not node.finished.done():
            executor.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 0.5  # finalized: a moment more, so the shutdown reply reaches its caller
        while rclpy.ok() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SlimsegError as exc:
        print(f"slimseg_node: error: {exc}", file=sys.stderr)
        code = 2
    finally:
        ignore_signals()
        if executor is not None:
            executor.shutdown(timeout_sec=0)
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
        restore_signals(previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
