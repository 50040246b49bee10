#!/usr/bin/env python3
"""Reliability benchmark of slimseg_node: a bounded burst at 10x capacity and a soak of >= 5000 frames.

Starts the node as its own process (shared harness, default input QoS: best effort, LARGE_DATA), measures
its capacity (frames one at a time), then:
- burst: frames published at `--burst-factor` x capacity for `--burst-s` seconds; prints sent, received,
  processed, dropped by cause, lost before the node (publishers' sequence-number gaps, and the RMW's own
  message-lost count), the accounting check sent = received + lost before the node, latency p50/p95 and RSS.
- soak: `--soak-frames` small frames at `--soak-rate` x capacity with a width switch (parameter service)
  every `--switch-every` frames; prints the same counts, frames lost around switches, latency, and RSS at
  start, at frame 500 and at the end (growth from frame 500 to the end in %).
- `--qos-probe`: 1080p/1440p/4K frames from a reliable publisher to a best-effort and a reliable subscriber
  in another process: how many arrive, and what the message-lost events report.

    python scripts/bench_reliability.py --export-test /tmp/rel_manifest --json /tmp/rel.json

Figures and the command that made them: docs/reliability.md. Goals (checked here, not in unit tests):
accounting exact, RSS growth < 2 % from frame 500 to the end, 0 frames lost at switches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from slimseg_ros.image_codec import fill_image
from slimseg_ros.node_process import NodeClient, NodeProcess
from slimseg_ros.qos import LABELS_QOS, SENSOR_QOS

REPO = Path(__file__).resolve().parents[1]
CAUSES = ("drops_superseded", "drops_invalid", "drops_failed", "frames_paused", "frames_throttled",
          "frames_inactive")
COUNTS = ("frames_received", "frames_processed", *CAUSES, "frames_lost_before_node",
          "frames_lost_rmw_reported")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (/proc, Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pct(values: list[float]) -> tuple[float | None, float | None]:
    """p50/p95 in ms of a list of seconds."""
    if not values:
        return None, None
    p50, p95 = np.percentile(np.asarray(values) * 1e3, [50, 95])
    return round(float(p50), 2), round(float(p95), 2)


class Probe:
    """The measuring side: a best-effort camera publisher (as a driver would), labels and diagnostics."""

    def __init__(self, process: NodeProcess, publisher_qos: QoSProfile = SENSOR_QOS) -> None:
        self.ros = NodeClient(process, name="rel_bench")
        node, ns, out = self.ros.node, process.namespace, process.full_name
        self.pub = node.create_publisher(Image, f"{ns}/image", publisher_qos)
        self.sent_at: dict[int, float] = {}
        self.latency: dict[int, float] = {}
        self.diag: dict[str, str] = {}
        self._lock = threading.Lock()
        node.create_subscription(Image, f"{out}/labels", self._on_labels, LABELS_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.full_name = out
        self.status = ""
        self.seq = 0

    def _on_labels(self, msg: Image) -> None:
        key = msg.header.stamp.sec * 1_000_000 + msg.header.stamp.nanosec // 1000
        with self._lock:
            sent = self.sent_at.get(key)
            if sent is not None:
                self.latency[key] = time.monotonic() - sent

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.full_name):
                self.diag = {kv.key: kv.value for kv in status.values}
                self.status = status.message

    def send(self, msg: Image) -> int:
        """Publish with a unique stamp; returns its key."""
        self.seq += 1
        key = 1_000_000 + self.seq
        msg.header.stamp.sec, msg.header.stamp.nanosec = key // 1_000_000, (key % 1_000_000) * 1000
        with self._lock:
            self.sent_at[key] = time.monotonic()
        self.pub.publish(msg)
        return key

    def counts(self) -> dict[str, int]:
        """The node's counters now (after a diagnostics period has passed); `unknown` loss counts as 0."""
        return {k: int(self.diag[k]) if self.diag[k].isdigit() else 0 for k in COUNTS}

    def fresh_counts(self, period_s: float) -> dict[str, int]:
        time.sleep(3 * period_s)
        return self.counts()


def frame_msg(width: int, height: int) -> Image:
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return fill_image(Image(), rgb, "rgb8")


def wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


def capacity_hz(probe: Probe, msg: Image, frames: int) -> float:
    """Frames per second the node sustains: the inverse of its busy time per frame, measured one by one."""
    for _ in range(frames):
        key = probe.send(msg)
        wait(lambda k=key: k in probe.latency, 5.0)
    time.sleep(0.6)
    busy_ms = float(probe.diag["latency_from_receipt_p50_ms"])
    return 1000.0 / busy_ms


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def summarise(name: str, sent: int, d: dict[str, int], keys: list[int], probe: Probe) -> dict:
    lost = d["frames_lost_before_node"]
    accounted = d["frames_processed"] + sum(d[c] for c in CAUSES)
    lat = [probe.latency[k] for k in keys if k in probe.latency]
    p50, p95 = pct(lat)
    return {
        "run": name, "sent": sent, "received": d["frames_received"], "processed": d["frames_processed"],
        "dropped": {c: d[c] for c in CAUSES if d[c]}, "lost_before_node": lost,
        "lost_rmw_reported": d["frames_lost_rmw_reported"],
        "sent_minus_received_minus_lost": sent - d["frames_received"] - lost,
        "received_minus_accounted": d["frames_received"] - accounted,
        "labels_received_by_client": len(lat), "latency_p50_ms": p50, "latency_p95_ms": p95,
    }


def burst(probe: Probe, proc: NodeProcess, msg: Image, rate: float, seconds: float, period: float) -> dict:
    before = probe.fresh_counts(period)
    rss0 = rss_mb(proc.pid)
    keys, start, n = [], time.monotonic(), int(rate * seconds)
    for i in range(n):
        target = start + i / rate
        while time.monotonic() < target:
            pass
        keys.append(probe.send(msg))
    elapsed = time.monotonic() - start
    time.sleep(1.0)
    after = probe.fresh_counts(period)
    out = summarise("burst", n, delta(after, before), keys, probe)
    out.update(rate_hz=round(rate, 1), achieved_send_hz=round(n / elapsed, 1), rss_start_mb=round(rss0, 1),
               rss_end_mb=round(rss_mb(proc.pid), 1))
    return out


def soak(probe: Probe, proc: NodeProcess, msg: Image, rate: float, frames: int, every: int,
         widths: list[float], period: float) -> dict:
    before = probe.fresh_counts(period)
    rss = {"start": rss_mb(proc.pid)}
    keys, switch_at, start = [], [], time.monotonic()
    for i in range(frames):
        if i and i % every == 0:
            width = widths[(i // every) % len(widths)]
            rejected = probe.ros.set_parameters({"width": width})
            if rejected:
                raise RuntimeError(f"width switch refused: {rejected}")
            switch_at.append(i)
        target = start + i / rate
        while time.monotonic() < target:
            time.sleep(0.0005)
        keys.append(probe.send(msg))
        if i == 500:
            rss["frame_500"] = rss_mb(proc.pid)
    time.sleep(1.0)
    after = probe.fresh_counts(period)
    rss["end"] = rss_mb(proc.pid)
    near = {keys[j] for s in switch_at for j in range(max(0, s - 2), min(len(keys), s + 3))}
    far = [k for k in keys if k not in near]
    out = summarise("soak", frames, delta(after, before), keys, probe)
    out.update(
        rate_hz=round(rate, 1), switches=len(switch_at), frames_near_switches=len(near),
        unlabelled_near_switches=sum(1 for k in near if k not in probe.latency),
        unlabelled_share_near_switches_pct=round(
            100.0 * sum(1 for k in near if k not in probe.latency) / max(1, len(near)), 2),
        unlabelled_share_elsewhere_pct=round(
            100.0 * sum(1 for k in far if k not in probe.latency) / max(1, len(far)), 2),
        rss_start_mb=round(rss["start"], 1), rss_frame_500_mb=round(rss["frame_500"], 1),
        rss_end_mb=round(rss["end"], 1),
        rss_growth_from_500_pct=round(100.0 * (rss["end"] - rss["frame_500"]) / rss["frame_500"], 2),
    )
    return out


# --- the QoS probe: a reliable publisher and a subscriber in two processes ---------------------------------
def qos_peer(role: str, width: int, height: int, frames: int, reliable: bool) -> None:
    """One side of the QoS probe (run as a subprocess of this script)."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    rclpy.init()
    node = rclpy.create_node(f"qos_{role}")
    rel = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    if role == "sub":
        got, lost = [], [0]
        events = SubscriptionEventCallbacks(message_lost=lambda e: lost.__setitem__(0, e.total_count))
        node.create_subscription(Image, "probe", lambda m: got.append(1), rel if reliable else SENSOR_QOS,
                                 event_callbacks=events)
        end = time.monotonic() + 4.0 + frames * 0.5
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        print(json.dumps({"received": len(got), "message_lost_events": lost[0]}))
    else:
        pub = node.create_publisher(Image, "probe", rel)
        wait(lambda: pub.get_subscription_count() > 0, 20)
        time.sleep(1.0)
        msg = frame_msg(width, height)
        for _ in range(frames):
            pub.publish(msg)
            time.sleep(1 / 3)
        time.sleep(2.0)
    rclpy.shutdown()


def qos_probe(frames: int) -> list[dict]:
    rows = []
    for width, height in ((1920, 1080), (2560, 1440), (3840, 2160)):
        for reliable in (False, True):
            env = {**os.environ, "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
                   "ROS_DOMAIN_ID": str(90 + len(rows))}
            args = [sys.executable, __file__, "--qos-peer", f"{width}x{height}", "--frames", str(frames)]
            args += ["--reliable"] if reliable else []
            sub = subprocess.Popen([*args, "--role", "sub"], env=env, stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            subprocess.run([*args, "--role", "pub"], env=env, check=True, capture_output=True)
            result = json.loads(sub.communicate(timeout=120)[0].strip().splitlines()[-1])
            kind = "reliable" if reliable else "best effort"
            rows.append({"frame": f"{width}x{height}", "subscription": kind, "sent": frames, **result})
    return rows


def node_large(manifest: str, log_dir: Path, size: str, frames: int) -> list[dict]:
    """The node itself fed large frames by a reliable publisher at 3 Hz: default QoS vs reliable_qos."""
    width, height = (int(v) for v in size.split("x"))
    rows = []
    for reliable in (False, True):
        params = {"manifest": manifest, "backend": "onnxruntime", "diagnostics_period_s": 0.2, "threads": 1,
                  "reliable_qos": reliable}
        env = {"OMP_NUM_THREADS": "1", "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
        with NodeProcess(params, log_dir, prefix="rellarge", env=env) as proc:
            probe = Probe(proc, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
            try:
                probe.ros.wait_up("active")
                wait(lambda p=probe: p.pub.get_subscription_count() > 0 and p.diag, 30)
                time.sleep(1.0)
                msg, warned = frame_msg(width, height), False
                before = probe.counts()
                for _ in range(frames):
                    probe.send(msg)
                    end = time.monotonic() + 1 / 3
                    while time.monotonic() < end:
                        warned |= "lost before the node" in probe.status  # the WARN status names it
                        time.sleep(0.01)
                d = delta(probe.fresh_counts(0.5), before)
            finally:
                probe.ros.close()
        rows.append({"frame": size, "input_qos": "reliable" if reliable else "best effort (default)",
                     "sent": frames, "received": d["frames_received"], "processed": d["frames_processed"],
                     "lost_rmw_reported": d["frames_lost_rmw_reported"],
                     "lost_before_node_seq": d["frames_lost_before_node"], "status_warned": warned})
    return rows


def emit_rows(key: str, rows: list[dict], json_path: str | None) -> None:
    """Print one JSON line per row; with --json also write them under `key`."""
    for row in rows:
        print(json.dumps(row))
    if json_path:
        Path(json_path).write_text(json.dumps({key: rows}, indent=2))


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--manifest", help="manifest.yaml of an export (a small input size keeps it fast)")
    parser.add_argument("--export-test", metavar="DIR", help="export a random 96x128 test model to DIR")
    parser.add_argument("--size", default="160x120", help="frame size WxH (default 160x120)")
    parser.add_argument("--burst-factor", type=float, default=10.0, help="burst rate / capacity (default 10)")
    parser.add_argument("--burst-s", type=float, default=3.0, help="burst duration in s (default 3)")
    parser.add_argument("--soak-frames", type=int, default=5000, help="soak frames (default 5000)")
    parser.add_argument("--soak-rate", type=float, default=0.5, help="soak rate / capacity (default 0.5)")
    parser.add_argument("--soak-max-hz", type=float, default=60.0, help="cap on the soak rate (default 60)")
    parser.add_argument("--switch-every", type=int, default=100, help="frames between width switches")
    parser.add_argument("--qos-probe", action="store_true", help="run only the 1080p/1440p/4K QoS probe")
    parser.add_argument("--frames", type=int, default=10, help="frames per QoS probe cell (default 10)")
    parser.add_argument("--node-large", metavar="WxH", help="run only: the node fed WxH frames, both QoS")
    parser.add_argument("--json", help="write the figures as JSON")
    parser.add_argument("--log-dir", default="/tmp/slimseg_bench_reliability", help="node log folder")
    parser.add_argument("--qos-peer", help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--reliable", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.qos_peer:
        w, h = (int(v) for v in args.qos_peer.split("x"))
        qos_peer(args.role, w, h, args.frames, args.reliable)
        return 0
    if args.qos_probe:
        emit_rows("qos_probe", qos_probe(args.frames), args.json)
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    from exported import bench_manifest

    args.manifest = bench_manifest(args.manifest, args.export_test, parser)
    if args.node_large:
        emit_rows("node_large", node_large(args.manifest, Path(args.log_dir), args.node_large, args.frames),
                  args.json)
        return 0
    width, height = (int(v) for v in args.size.split("x"))
    period = 0.2
    params = {"manifest": args.manifest, "backend": "onnxruntime", "policy": "fixed", "width": 1.0,
              "diagnostics_period_s": period, "threads": 1}
    env = {"OMP_NUM_THREADS": "1", "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    results: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "size": args.size}
    with NodeProcess(params, Path(args.log_dir), prefix="relbench", env=env) as proc:
        probe = Probe(proc)
        try:
            probe.ros.wait_up("active")
            wait(lambda: probe.pub.get_subscription_count() > 0 and probe.diag, 30)
            msg = frame_msg(width, height)
            cap = capacity_hz(probe, msg, 40)
            results["capacity_hz"] = round(cap, 1)
            print(f"capacity: {cap:.1f} frames/s at {args.size}")
            results["burst"] = burst(probe, proc, msg, args.burst_factor * cap, args.burst_s, period)
            print(json.dumps(results["burst"]))
            widths = [float(w) for w in probe.diag["widths"].split(",")]
            for w in widths:  # each width's first inference is slow (lazy allocation): not a switch cost
                probe.ros.set_parameters({"width": w})
                capacity_hz(probe, msg, 3)
            rate = min(args.soak_rate * cap, args.soak_max_hz)
            results["soak"] = soak(probe, proc, msg, rate, args.soak_frames, args.switch_every,
                                   [widths[0], widths[-1]], period)
            print(json.dumps(results["soak"]))
        finally:
            probe.ros.close()
    results["node_exit_code"] = proc.returncode
    print(f"node exit code {proc.returncode}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
