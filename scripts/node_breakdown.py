#!/usr/bin/env python3
"""Where the node's time per frame goes beyond the middleware floor: per-step times inside real processes.

bench_node.py reports overhead = round trip - backend time and an echo process as the middleware floor. This
script splits one frame's round trip into steps, timed inside the processes it starts (bench_node's client,
transport and QoS): publish -> subscription callback (middleware, the rclpy executor's take), callback ->
worker thread (wake-up, GIL), decode, resize, inference, label resize, publish, publish -> client. Each
round runs, one after the other:
- echo: bench_node's floor (Image in, blank mono8 out, the node's worker hand-off);
- echo+infer: the same echo running the node's backend (`Backend.infer`, same manifest, width, threads) on
  each frame before it replies, so the round trip minus inference shows what the inference itself does to
  the middleware steps around it (a core that idled, caches it evicted), which no node code can remove;
- node: slimseg_node.

The timing is installed from outside: this script starts each child as `--child MODE`, which wraps the
node's and rclpy's methods before running the real entry point, so the shipped node carries no timing code.
All timestamps are time.perf_counter (CLOCK_MONOTONIC: one clock for every process on Linux).

    python scripts/node_breakdown.py --manifest /tmp/oh/lite0_480/manifest.yaml --rounds 3
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import bench_node  # noqa: E402 - the sibling script: its client, processes and echo floor

from slimseg_ros.node_process import NodeProcess  # noqa: E402

MODES = ("echo", "echo+infer", "node")
# (label, from point, to point); a point is "<step>0" / "<step>1" (its start / end) or the client's c_pub /
# c_recv. Steps a process lacks are left out of its column.
STEPS = [
    ("publish -> callback", "c_pub", "cb0"),
    ("callback (_on_image / submit)", "cb0", "cb1"),
    ("callback -> worker starts", "cb0", "proc0"),
    ("worker start -> decode", "proc0", "check0"),
    ("decode (check_pixels, image_to_rgb)", "check0", "rgb1"),
    ("resize.to_network", "tonet0", "tonet1"),
    ("to_network -> inference", "tonet1", "infer0"),
    ("inference (Backend.infer)", "infer0", "infer1"),
    ("inference -> labels resize", "infer1", "lblres0"),
    ("labels resize (labels_to_frame)", "lblres0", "lblres1"),
    ("labels resize -> publish", "lblres1", "pub0"),
    ("worker start -> publish", "proc0", "pub0"),
    ("publish call", "pub0", "pub1"),
    ("after publish (camera_info, stats, policy)", "pub1", "proc1"),
    ("publish -> client receives", "pub0", "c_recv"),
    ("round trip", "c_pub", "c_recv"),
    ("round trip - inference", "c_pub", "c_recv"),  # minus infer1 - infer0 of the same frame
]


# --- the child: wrappers, then the real entry point ------------------------------------------------------
def child(mode: str, out: str, argv: list[str], infer_manifest: str, width: float, threads: int) -> int:
    """Run the node or the echo with timestamps recorded per frame (key: the header stamp), dumped at exit."""
    records: list[tuple[int, str, float]] = []
    atexit.register(lambda: Path(out).write_text(json.dumps(records)))
    current = threading.local()
    clock = time.perf_counter

    def key(header: Any) -> int:
        return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec

    def timed(owner: Any, name: str, step: str, key_of: Callable[..., int] | None = None) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key_of(*args) if key_of else getattr(current, "key", 0)
            current.key = k
            records.append((k, step + "0", clock()))
            try:
                return original(*args, **kwargs)
            finally:
                records.append((k, step + "1", clock()))

        setattr(owner, name, wrapper)

    from rclpy.publisher import Publisher

    publish = Publisher.publish

    def timed_publish(self: Any, msg: Any) -> None:  # Image messages only (not diagnostics, width)
        if type(msg).__name__ != "Image":
            return publish(self, msg)
        records.append((key(msg.header), "pub0", clock()))
        publish(self, msg)
        records.append((key(msg.header), "pub1", clock()))

    Publisher.publish = timed_publish
    sys.argv = [sys.argv[0], *argv]
    if mode == "node":
        import slimseg_ros.node as node
        import slimseg_ros.resize as resize
        from slimseg_ros.backends.base import Backend

        on_image = node.SlimsegNode._on_image

        def timed_on_image(self: Any, msg: Any, info: Any) -> None:  # two arguments: rclpy passes the info
            records.append((key(msg.header), "cb0", clock()))
            on_image(self, msg, info)
            records.append((key(msg.header), "cb1", clock()))

        node.SlimsegNode._on_image = timed_on_image
        timed(node.SlimsegNode, "_process", "proc", lambda self, frame: key(frame.msg.header))
        timed(node, "check_pixels", "check")  # the first step of decoding an Image
        timed(node, "image_to_rgb", "rgb")
        timed(resize, "to_network", "tonet")
        timed(Backend, "infer", "infer")
        timed(resize, "labels_to_frame", "lblres")
        from slimseg_ros.node_entry import main

        return main()
    # the echo floor, optionally running the node's backend on each frame before it replies
    import slimseg_ros.worker as worker

    backend = None
    if mode == "echo+infer":
        from slimseg_ros.backends import create_backend
        from slimseg_ros.image_codec import image_to_rgb

        backend = create_backend("onnxruntime", infer_manifest, threads=threads)
        backend.warm_up()
    make_worker = worker.NewestFrameWorker.__init__

    def timed_worker(self: Any, process: Callable[[Any], None], *args: Any, **kwargs: Any) -> None:
        def reply(msg: Any) -> None:
            k = key(msg.header)
            records.append((k, "proc0", clock()))
            if backend is not None:
                rgb = image_to_rgb(msg)
                records.append((k, "infer0", clock()))
                backend.infer(rgb, width)
                records.append((k, "infer1", clock()))
            process(msg)
            records.append((k, "proc1", clock()))

        make_worker(self, reply, *args, **kwargs)

    worker.NewestFrameWorker.__init__ = timed_worker
    submit = worker.NewestFrameWorker.submit

    def timed_submit(self: Any, msg: Any) -> bool:  # one argument: rclpy passes the message only
        records.append((key(msg.header), "cb0", clock()))
        accepted = submit(self, msg)
        records.append((key(msg.header), "cb1", clock()))
        return accepted

    worker.NewestFrameWorker.submit = timed_submit
    return bench_node.main(argv)


# --- the measuring side ----------------------------------------------------------------------------------
class Instrumented(NodeProcess):
    """A bench_node process (node or echo) started through this script's --child wrapper."""

    def __init__(self, base: NodeProcess, mode: str, out: Path, args: argparse.Namespace) -> None:
        super().__init__(base.params or None, base.workdir, namespace=base.namespace,
                         domain_id=base.domain_id, command=base.command, log=base.log_path, name=base.name)
        self.env = base.env
        self.mode, self.out, self.args = mode, out, args

    def argv(self) -> list[str]:
        cmd = super().argv()
        own = cmd[2:] if self.mode != "node" else cmd[cmd.index("--ros-args"):]  # echo: python bench_node.py
        return [sys.executable, __file__, "--child", self.mode, "--out", str(self.out),
                "--manifest", self.args.manifest, "--width", str(self.args.width),
                "--threads", str(self.args.threads), "--", *own]


def run_mode(args: argparse.Namespace, mode: str, size: tuple[int, int], tag: str) -> list[dict[str, float]]:
    """One process of `mode`: frames one at a time as bench_node sends them; per frame, point -> time."""
    out = Path(args.log_dir) / f"{tag}.json"
    echo = mode != "node"
    params = {} if echo else {"width": float(args.width), "diagnostics_period_s": 0.25}
    log = Path(args.log_dir) / f"{tag}.log"
    base = bench_node.bench_process(args, args.transport, log, echo=echo, **params)
    proc = Instrumented(base, mode, out, args).start()
    client = bench_node.Client(proc, args.reliable)
    sent = {}
    try:
        client.wait_ready()
        rgb = bench_node.test_frame(args.data, *size)
        for i in range(args.warmup + args.frames):
            trip = client.round_trip(rgb, i, args.timeout)
            if trip is not None and i >= args.warmup:
                sent[1_000_000_000 + i] = client.received[1_000_000_000 + i] - trip
    finally:
        client.close()
        proc.stop()
    points: dict[int, dict[str, float]] = {}
    for k, point, t in json.loads(out.read_text()):
        points.setdefault(k, {})[point] = t
    return [{**points.get(k, {}), "c_pub": t, "c_recv": client.received[k]} for k, t in sent.items()]


def median_ms(frames: list[dict[str, float]], start: str, end: str,
              less_inference: bool = False) -> float | None:
    """Median over frames of end - start (minus that frame's inference when asked); None without data."""
    needs = (start, end, "infer0", "infer1") if less_inference else (start, end)
    values = [f[end] - f[start] - (f["infer1"] - f["infer0"] if less_inference else 0.0)
              for f in frames if all(p in f for p in needs)]
    return float(np.median(values)) * 1e3 if values else None


def round_table(rounds: list[dict[str, list[dict[str, float]]]], load: list[float]) -> str:
    """Medians over frames per round; the table shows the median over rounds (and min-max across rounds)."""
    head = "| step (median ms per frame) | " + " | ".join(MODES) + " |"
    lines = [head, "|---" * (len(MODES) + 1) + "|"]
    for label, start, end in STEPS:
        cells = []
        for mode in MODES:
            values = [median_ms(r[mode], start, end, label.endswith("- inference")) for r in rounds]
            per_round = [v for v in values if v is not None]
            cells.append(f"{np.median(per_round):.2f} ({min(per_round):.2f}-{max(per_round):.2f})"
                         if per_round else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(f"\n{len(rounds)} rounds; load average at each round's start: "
                 + ", ".join(f"{v:.2f}" for v in load))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, help="manifest.yaml of an export")
    parser.add_argument("--size", default="480x360", help="frame size WxH")
    parser.add_argument("--width", type=float, default=0.25, help="network width")
    parser.add_argument("--threads", type=int, default=1, help="the node's (and echo+infer's) ORT threads")
    parser.add_argument("--transport", default="LARGE_DATA", choices=sorted(bench_node.TRANSPORTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("SLIMSEG_DATA", REPO.parent / "shared/data/camvid")))
    parser.add_argument("--log-dir", default="/tmp/slimseg_node_breakdown")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.out, args.rest, args.manifest, args.width, args.threads)
    args.backend, args.reliable = "onnxruntime", False
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    rounds, load = [], []
    for i in range(args.rounds):
        load.append(os.getloadavg()[0])
        rounds.append({mode: run_mode(args, mode, size, f"{mode}_{i}") for mode in MODES})
        print(f"round {i + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"{args.size}, width {args.width:g}, threads {args.threads}, {args.transport}, "
          f"{args.frames} frames")
    print(round_table(rounds, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
