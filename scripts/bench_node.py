#!/usr/bin/env python3
"""Node overhead between two processes: image in -> labels out round trips, frames lost, width switches.

For each transport (Fast DDS default vs FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA) and frame size, this script
starts `slimseg_node` as its own process, publishes rgb8 frames one at a time (next frame after the labels
of the previous one, or after --timeout), and measures the round trip. Backend time comes from the node's
own /diagnostics (inference p50/p95 over exactly those frames: one node process per run), so
overhead = round trip - backend time (difference of percentiles). A bare echo process (this script with
--echo: Image in, blank mono8 Image of the same size out, no inference) gives the middleware floor. Last, the
node runs frames across --switches width changes (parameter service) and counts frames lost.

    python scripts/bench_node.py --manifest /tmp/m/manifest.yaml --markdown docs/node_bench.md
    python scripts/bench_node.py --export-test /tmp/bench_manifest     # export a small random model first

`--outputs labels,all` runs each size twice: labels only, and with ~/color and ~/overlay subscribed (as
with rviz open), the round trip then lasting until the overlay arrives. The node's time per frame
(diagnostics latency_from_receipt p50) of the two gives the visualisation's cost as a ratio. The switch
run reports the first frame at each width against that width's median round trip: the first-visit cost
the node's warm-up at configure removes (`slimseg bench --first-frame` gives the backend's own figure
with and without warm-up).

Speed goals (node overhead <= 2 ms p50 at 480x360, <= 25 ms at 1920x1080, 0 frames lost on switches, time
per 1080p frame with colour and overlay <= 1.3x labels only) are checked here, not in tests. The network
cost does not enter the overhead, so a small manifest (e.g. 96x128 from --export-test) keeps the run
short; the backend resizes each frame to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from slimseg_ros.image_codec import fill_image
from slimseg_ros.node_process import NodeClient, NodeProcess
from slimseg_ros.qos import LABELS_QOS
from slimseg_ros.worker import NewestFrameWorker

REPO = Path(__file__).resolve().parents[1]
TRANSPORTS = {"default": None, "LARGE_DATA": "LARGE_DATA"}


def qos(reliable: bool) -> QoSProfile:
    return QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    )


def percentiles(values: list[float]) -> tuple[float | None, float | None]:
    """p50/p95 in ms of seconds values; None when empty."""
    if not values:
        return None, None
    p50, p95 = np.percentile(np.asarray(values) * 1e3, [50, 95])
    return float(p50), float(p95)


def test_frame(data: Path | None, width: int, height: int) -> np.ndarray:
    """A real CamVid frame resized to the size (or a seeded random one when the data set is absent)."""
    if data is not None and (data / "val").is_dir():
        path = sorted((data / "val").glob("*"))[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


class Client:
    """The measuring side: publishes frames, times the labels, reads the node's diagnostics."""

    def __init__(self, process: NodeProcess, reliable: bool, outputs: tuple[str, ...] = ("labels",)) -> None:
        # the harness's client: same domain, and the process's transport for this participant only
        self.ros = NodeClient(process, name="bench")
        self.node = self.ros.node
        namespace, out_ns = process.namespace, process.full_name
        self.pub = self.node.create_publisher(Image, f"{namespace}/image", qos(reliable))
        self.received: dict[int, float] = {}  # stamp -> when the last of `outputs` for it arrived
        self._arrived: dict[int, set[str]] = {}
        self.outputs = outputs
        self.event = threading.Event()
        for topic in outputs:
            self.node.create_subscription(
                Image, f"{out_ns}/{topic}", lambda msg, t=topic: self._on_output(t, msg), qos(True)
            )
        self.diag: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.params = self.ros.service(SetParameters, "set_parameters")
        self.out_ns = out_ns

    def _on_output(self, topic: str, msg: Image) -> None:
        now = time.perf_counter()
        key = msg.header.stamp.nanosec + msg.header.stamp.sec * 1_000_000_000
        seen = self._arrived.setdefault(key, set())
        seen.add(topic)
        if len(seen) == len(self.outputs):
            self.received[key] = now
            self.event.set()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.out_ns):
                self.diag = {kv.key: kv.value for kv in status.values}

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pub.get_subscription_count() > 0 and all(
                self.node.count_publishers(f"{self.out_ns}/{topic}") > 0 for topic in self.outputs
            ):
                if not self.params.wait_for_service(timeout_sec=max(deadline - time.monotonic(), 1.0)):
                    raise SystemExit("bench: the node's parameter service did not appear")
                time.sleep(1.0)  # let the reverse direction (labels) match as well
                return
            time.sleep(0.1)
        raise SystemExit("bench: the node did not come up (see its log)")

    def round_trip(self, rgb: np.ndarray, seq: int, timeout: float) -> float | None:
        """Publish one frame and wait for its labels; the round trip in seconds or None if lost."""
        msg = fill_image(Image(), rgb, "rgb8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1, seq
        msg.header.frame_id = "bench"
        key = 1_000_000_000 + seq
        self.event.clear()
        sent = time.perf_counter()
        self.pub.publish(msg)
        deadline = sent + timeout
        while key not in self.received:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            self.event.wait(remaining)
            self.event.clear()
        return self.received[key] - sent

    def set_width(self, width: float, timeout: float = 5.0) -> bool:
        try:
            return not self.ros.set_parameters({"width": float(width)}, timeout)
        except TimeoutError:
            return False

    def close(self) -> None:
        self.ros.close()


def bench_process(args: argparse.Namespace, transport: str, log: Path, echo: bool = False,
                  **params: object) -> NodeProcess:
    """slimseg_node (or the echo floor) as launch would start it, in a fresh ROS domain and namespace per
    measured process, so runs never hear each other; the bench's common parameters plus `params`."""
    env = {"FASTDDS_BUILTIN_TRANSPORTS": TRANSPORTS[transport]}  # None: Fast DDS's default transports
    namespace = f"/bench_{uuid.uuid4().hex[:8]}"
    if echo:
        mode = "--reliable" if args.reliable else "--best-effort"
        return NodeProcess(None, log.parent, namespace=namespace, env=env, log=log, name="echo",
                           command=[sys.executable, __file__, "--echo", namespace, mode])
    values = {"manifest": args.manifest, "backend": args.backend, **params,
              "reliable_qos": bool(args.reliable)}
    if args.threads is not None:  # else the node's default
        values["threads"] = args.threads
    return NodeProcess(values, log.parent, namespace=namespace, env=env, log=log)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(args: argparse.Namespace, transport: str, size: tuple[int, int], echo: bool,
            outputs: str = "labels", vis: str | None = None) -> dict:
    """One process pair: frames at one size over one transport; returns the figures.

    outputs "all": ~/color and ~/overlay are subscribed too, at the node's `visualization_size` `vis`,
    and a frame's round trip ends with the last of the three (the echo process has only labels)."""
    width, height = size
    stem = f"{'echo' if echo else 'node'}_{transport}_{width}x{height}_{outputs}" + (f"_{vis}" if vis else "")
    log = Path(args.log_dir) / f"{stem}.log"
    params = {} if echo else {"width": float(args.width), "diagnostics_period_s": 0.25}
    if vis not in (None, "default") and not echo:  # default: the node's own (older code has no parameter)
        params["visualization_size"] = vis
    proc = bench_process(args, transport, log, echo=echo, **params).start()
    topics = ("labels", "color", "overlay") if outputs == "all" and not echo else ("labels",)
    client = Client(proc, args.reliable, topics)
    try:
        client.wait_ready()
        rgb = test_frame(args.data, width, height)
        frames = args.frames if width * height <= 640 * 480 else args.frames_large
        for i in range(args.warmup):
            client.round_trip(rgb, i, args.timeout)
        cpu = cpu_seconds(proc.pid)
        trips = [client.round_trip(rgb, args.warmup + i, args.timeout) for i in range(frames)]
        cpu = cpu_seconds(proc.pid) - cpu
        ok = [t for t in trips if t is not None]
        time.sleep(0.6)  # one more diagnostics period covering the last frame
        result = {
            "transport": transport,
            "size": f"{width}x{height}",
            "process": "echo" if echo else "node",
            "outputs": ",".join(topics),
            "visualization_size": vis if len(topics) > 1 else None,
            "qos": "reliable" if args.reliable else "best_effort",
            "frames": frames,
            "lost": frames - len(ok),
            "cpu_ms_per_frame": 1e3 * cpu / frames,  # the whole process: every thread, the middleware's too
        }
        result["round_trip_p50_ms"], result["round_trip_p95_ms"] = percentiles(ok)
        if not echo:
            diag = client.diag
            result["backend_p50_ms"] = _float(diag.get("inference_p50_ms"))
            result["backend_p95_ms"] = _float(diag.get("inference_p95_ms"))
            result["in_node_p50_ms"] = _float(diag.get("latency_from_receipt_p50_ms"))
            for q in ("p50", "p95"):
                trip, backend = result[f"round_trip_{q}_ms"], result[f"backend_{q}_ms"]
                result[f"overhead_{q}_ms"] = None if trip is None or backend is None else trip - backend
        return result
    finally:
        client.close()
        proc.stop()


def run_switches(args: argparse.Namespace, transport: str) -> dict:
    """Frames across width switches at 480x360: each switch, then a frame; a frame without labels is lost.

    The node starts at 0.25 and the path is warmed with --warmup frames there, so the first frames at 0.5,
    0.75 and 1.0 are true first visits of a width (what the node's warm-up at configure is for), compared
    with that width's later frames, each of which also follows a switch.
    """
    log = Path(args.log_dir) / f"node_switches_{transport}.log"
    proc = bench_process(args, transport, log, width=0.25).start()
    client = Client(proc, args.reliable)
    widths = [0.5, 0.75, 1.0, 0.25]
    try:
        client.wait_ready()
        rgb = test_frame(args.data, 480, 360)
        for i in range(args.warmup):
            client.round_trip(rgb, 10_000 + i, args.timeout)
        lost = refused = 0
        trips = []
        per_width: dict[float, list[float]] = {}
        for i in range(args.switches):
            width = widths[i % len(widths)]
            if not client.set_width(width):
                refused += 1
            trip = client.round_trip(rgb, i + 1, args.timeout)
            lost += trip is None
            if trip is not None:
                trips.append(trip)
                per_width.setdefault(width, []).append(trip)
        p50, p95 = percentiles(trips)
        first = {f"{w:g}": values[0] / float(np.median(values[1:]))
                 for w, values in per_width.items() if len(values) > 2 and w != 0.25}  # 0.25: warmed
        return {
            "transport": transport,
            "switches": args.switches,
            "lost": lost,
            "refused": refused,
            "round_trip_p50_ms": p50,
            "round_trip_p95_ms": p95,
            "first_visit_ratio": first,
        }
    finally:
        client.close()
        proc.stop()


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "n/a") else None
    except ValueError:
        return None


def echo_server(namespace: str, reliable: bool) -> None:
    """The floor: receive rgb8, hand it to a worker thread as the node does, publish a blank mono8 image
    of the same size with the same header."""
    rclpy.init()
    node = rclpy.create_node("echo", namespace=namespace)
    pub = node.create_publisher(Image, "~/labels", LABELS_QOS)  # the node's own output QoS

    blank: dict[tuple[int, int], np.ndarray] = {}

    def reply(msg: Image) -> None:
        size = (msg.height, msg.width)
        if size not in blank:
            blank[size] = np.zeros(size, np.uint8)
        pub.publish(fill_image(Image(header=msg.header), blank[size], "mono8"))

    # Same hand-off as the node (publishing large frames from the executor thread measured slower here).
    worker = NewestFrameWorker(reply)
    node.create_subscription(Image, "image", worker.submit, qos(reliable))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        worker.stop()
        node.destroy_node()
        rclpy.try_shutdown()


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown(results: list[dict], switches: list[dict], command: str, note: str = "") -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"RMW {os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')}, "
        f"load average {os.getloadavg()[0]:.1f} at the end" + (f"  \n{note}" if note else ""),
        "",
        "| process | outputs | transport | size | input QoS | frames | lost | round trip p50 / p95 ms | "
        "backend p50 / p95 ms | overhead p50 / p95 ms | overhead above echo p50 ms | node time p50 ms | "
        "node CPU ms / frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    floors = {(r["transport"], r["size"]): r["round_trip_p50_ms"] for r in results if r["process"] == "echo"}
    for r in results:
        floor = floors.get((r["transport"], r["size"]))
        above = None
        if r["process"] == "node" and floor is not None and r.get("overhead_p50_ms") is not None:
            above = r["overhead_p50_ms"] - floor
        outputs = r["outputs"] + (f" ({r['visualization_size']})" if r.get("visualization_size") else "")
        lines.append(
            f"| {r['process']} | {outputs} | {r['transport']} | {r['size']} | {r['qos']} | "
            f"{r['frames']} | {r['lost']} | {fmt(r['round_trip_p50_ms'])} / {fmt(r['round_trip_p95_ms'])} | "
            f"{fmt(r.get('backend_p50_ms'))} / {fmt(r.get('backend_p95_ms'))} | "
            f"{fmt(r.get('overhead_p50_ms'))} / {fmt(r.get('overhead_p95_ms'))} | {fmt(above)} | "
            f"{fmt(r.get('in_node_p50_ms'))} | {fmt(r.get('cpu_ms_per_frame'))} |"
        )
    labels_only = {(r["transport"], r["size"]): r for r in results
                   if r["process"] == "node" and r["outputs"] == "labels"}
    ratios = []
    for r in results:
        base = labels_only.get((r["transport"], r["size"]))
        if r["process"] == "node" and r["outputs"] != "labels" and base and base.get("in_node_p50_ms") \
                and r.get("in_node_p50_ms"):
            time_ratio = r["in_node_p50_ms"] / base["in_node_p50_ms"]
            cpu_ratio = r["cpu_ms_per_frame"] / base["cpu_ms_per_frame"]
            ratios.append(f"{r['size']} {r['transport']} {r['visualization_size']}: {time_ratio:.2f}x "
                          f"(CPU {cpu_ratio:.2f}x)")
    if ratios:
        what = "Node time (and CPU) per frame with colour and overlay subscribed / labels only: "
        lines += ["", what + "; ".join(ratios)]
    lines += [
        "",
        "| width switches | transport | frames lost | switches refused | round trip p50 / p95 ms | "
        "first frame at a width / its median |",
        "|---|---|---|---|---|---|",
    ]
    for s in switches:
        first = ", ".join(f"{w}: {v:.2f}" for w, v in sorted(s["first_visit_ratio"].items()))
        lines.append(
            f"| {s['switches']} | {s['transport']} | {s['lost']} | {s['refused']} | "
            f"{fmt(s['round_trip_p50_ms'])} / {fmt(s['round_trip_p95_ms'])} | {first} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", help="manifest.yaml of an export (small input size keeps it fast)")
    parser.add_argument(
        "--export-test", metavar="DIR", help="export a random 96x128 test model to DIR and use it"
    )
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, help="node parameter threads (default: the node's)")
    parser.add_argument("--outputs", default="labels",
                        help="labels and/or all (colour and overlay subscribed too), comma-separated")
    parser.add_argument("--visualization-size", default="default",
                        help="the node's visualization_size in the `all` runs: network, input and/or default "
                        "(not set: the node's default), comma-separated")
    parser.add_argument("--width", type=float, default=0.25, help="network width for the latency runs")
    parser.add_argument("--sizes", default="480x360,1920x1080", help="frame sizes WxH, comma-separated")
    parser.add_argument("--transports", default="default,LARGE_DATA", help=f"from {', '.join(TRANSPORTS)}")
    parser.add_argument("--frames", type=int, default=100, help="frames per run up to 640x480")
    parser.add_argument("--frames-large", type=int, default=60, help="frames per run above 640x480")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds before a frame counts as lost")
    parser.add_argument("--switches", type=int, default=100, help="width switches (0 to skip)")
    parser.add_argument("--no-echo", action="store_true", help="skip the bare echo floor")
    qos_group = parser.add_mutually_exclusive_group()
    qos_group.add_argument("--reliable", action="store_true", help="reliable input QoS")
    qos_group.add_argument(
        "--best-effort", dest="reliable", action="store_false", help="sensor-data QoS (default)"
    )
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("SLIMSEG_DATA", REPO.parent / "shared/data/camvid"))
    )
    parser.add_argument("--json", help="write the figures as JSON")
    parser.add_argument("--markdown", help="write a markdown table (with the command and machine)")
    parser.add_argument("--log-dir", default="/tmp/slimseg_bench_node", help="process logs")
    parser.add_argument("--note", default="", help="a line for the table, e.g. the load during the run")
    parser.add_argument("--echo", metavar="NAMESPACE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:
        echo_server(args.echo, args.reliable)
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    from exported import bench_manifest

    args.manifest = bench_manifest(args.manifest, args.export_test, parser)
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    transports = [t.strip() for t in args.transports.split(",")]
    results, switches = [], []
    outputs = [o.strip() for o in args.outputs.split(",")]
    vis_sizes = [v.strip() for v in args.visualization_size.split(",")]
    node_runs = [(False, o, v) for o in outputs for v in (vis_sizes if o == "all" else [None])]
    for transport in transports:
        for size in sizes:
            runs = [] if args.no_echo else [(True, "labels", None)]
            for echo, out, vis in runs + node_runs:
                r = run_one(args, transport, size, echo, out, vis)
                print(json.dumps(r), flush=True)
                results.append(r)
        if args.switches:
            s = run_switches(args, transport)
            print(json.dumps(s), flush=True)
            switches.append(s)
    command = "python scripts/bench_node.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(results, switches, command, args.note)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "switches": switches}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
