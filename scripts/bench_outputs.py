#!/usr/bin/env python3
"""The node's output path per frame, step by step: labels only, and with ~/color and ~/overlay at each
`visualization_size`, interleaved; and d05dd1f's path (before issue 15) for reference.

The paths are SlimsegNode._publish_outputs without the node: labels resized into a reused message, colours
by `cv2.LUT` at the network size, then either upsampled once to the frame and blended over it (`input`) or
blended over the network's input image (`network`), all written into reused messages (`ImageBuffer`).
d05dd1f: labels resized to the frame, `palette[labels]` at the frame size, a new blended image, each image
copied into a new `array.array` message. Each message then goes out one of two ways:
- `serialize_message` (default): what rclpy's publish does with it (its C conversion plus CDR
  serialisation), so rclpy's own copies are counted;
- `--publish`: a real publish over Fast DDS LARGE_DATA to a subscriber process (this script with
  --subscribe), so the middleware's copies to the subscriber are counted too.
Prints p50 ms per path, its ratio to labels only, and p50 ms per step; the d05dd1f and input paths are
compared message for message first.

`--gil` asks instead whether a visualisation thread could publish beside inference: a pure-Python thread
counts while this one sleeps, runs a GIL-free OpenCV resize, or publishes 1080p rgb8 images to the
subscriber process; the less it counts during publishing than during the resize, the more of publish
holds the GIL (rclpy converts and serialises without releasing it).

    python scripts/bench_outputs.py --sizes 480x360,1920x1080 --frames 40 [--publish | --gil]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from slimseg_ros.image_codec import ImageBuffer, fill_image
from slimseg_ros.qos import LABELS_QOS, OUTPUT_QOS
from slimseg_ros.resize import Fit, fit, labels_at_network, labels_to_frame, to_network
from slimseg_ros.visualize import VISUALIZATION_SIZES, colorize, make_palette, overlay

NETWORK = (360, 480)
VOID = 11
TOPICS = ("labels", "color", "overlay")


def before(rgb: np.ndarray, labels: np.ndarray, geometry: Fit, palette: np.ndarray) -> list:
    """The d05dd1f path: frame-size fancy-index colours, new arrays, array.array copies."""
    frame_labels = labels_to_frame(labels, geometry, VOID)
    color = palette[frame_labels]
    blended = cv2.addWeighted(color, 0.5, rgb, 0.5, 0.0)
    msgs = [fill_image(Image(), frame_labels, "mono8"), fill_image(Image(), color, "rgb8"),
            fill_image(Image(), blended, "rgb8")]
    return [serialize_message(m) for m in msgs]


class Path_:
    """The node's path now; `vis` None: labels only, else the visualization_size of colour and overlay."""

    def __init__(self, palette: np.ndarray, vis: str | None, send: Callable[[str, Image], object]) -> None:
        self.palette, self.vis, self.send = palette, vis, send
        self.void_color = tuple(int(v) for v in palette[VOID])
        encodings = ("mono8", "rgb8", "rgb8")
        self.out = {name: ImageBuffer(Image, enc) for name, enc in zip(TOPICS, encodings, strict=True)}

    def __call__(self, rgb: np.ndarray, network_input: np.ndarray, labels: np.ndarray, geometry: Fit,
                 stages: dict | None = None) -> list:
        """The path; `stages` (name -> list) also collects each step's ms."""
        clock = [time.perf_counter()]

        def mark(name: str) -> None:
            clock.append(time.perf_counter())
            if stages is not None:
                stages.setdefault(name, []).append(1e3 * (clock[-1] - clock[-2]))

        header = Image().header
        labels_to_frame(labels, geometry, VOID, out=self.out["labels"].pixels(geometry.frame))
        mark("labels resize")
        sent = [self.send("labels", self.out["labels"].message(header))]
        mark("send labels")
        if self.vis is None:
            return sent
        if self.vis == "network":
            shape, image = (*geometry.network, 3), network_input
            color = colorize(labels_at_network(labels, geometry, VOID), self.palette,
                             out=self.out["color"].pixels(shape))
            mark("colour LUT")
        else:
            shape, image = (*geometry.frame, 3), rgb
            small = colorize(labels, self.palette)
            mark("colour LUT")
            color = labels_to_frame(small, geometry, self.void_color, out=self.out["color"].pixels(shape))
            mark("colour upsample")
        sent.append(self.send("color", self.out["color"].message(header)))
        mark("send colour")
        overlay(image, color, 0.5, out=self.out["overlay"].pixels(shape))
        mark("overlay blend")
        sent.append(self.send("overlay", self.out["overlay"].message(header)))
        mark("send overlay")
        return sent


def publisher(log_dir: Path) -> tuple[Callable[[str, Image], object], Callable[[], None]]:
    """A send function that publishes over Fast DDS LARGE_DATA to a subscriber process, and a closer."""
    from slimseg_ros.node_process import NodeClient, NodeProcess

    namespace = f"/outputs_{os.getpid()}"
    proc = NodeProcess(None, log_dir, namespace=namespace, env={"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                       name="sink", command=[sys.executable, __file__, "--subscribe", namespace]).start()
    client = NodeClient(proc, name="outputs")
    pubs = {t: client.node.create_publisher(Image, f"{proc.namespace}/{t}", LABELS_QOS if t == "labels"
                                            else OUTPUT_QOS) for t in TOPICS}
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"the subscriber process did not come up:\n{proc.log_text()}")
        time.sleep(0.1)

    def close() -> None:
        client.close()
        proc.stop()

    return (lambda topic, msg: pubs[topic].publish(msg)), close


def subscriber(namespace: str) -> None:
    """The receiving side of --publish: subscribes to the three topics as rviz would, and spins."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    with rclpy.init(), rclpy.create_node("sink", namespace=namespace) as node:
        for topic in TOPICS:
            qos = LABELS_QOS if topic == "labels" else OUTPUT_QOS
            node.create_subscription(Image, topic, lambda _msg: None, qos)
        with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
            rclpy.spin(node)


def gil_probe(send: Callable[[str, Image], object], seconds: float = 2.0) -> None:
    """Counter-thread rate (M iterations/s) while this thread sleeps, resizes (GIL released) or publishes."""
    import threading

    message = ImageBuffer(Image, "rgb8")
    message.pixels((1080, 1920, 3))[...] = 7
    msg = message.message(Image().header)
    big = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    work = {"sleep 5 ms": lambda: time.sleep(0.005),
            "cv2.resize 1080p -> 2160p (releases the GIL)": lambda: cv2.resize(big, (3840, 2160)),
            "publish 1080p rgb8": lambda: send("color", msg)}
    for name, call in work.items():
        stop, counted = threading.Event(), []

        def count(stop: threading.Event = stop, counted: list = counted) -> None:
            n = 0
            while not stop.is_set():
                n += 1
            counted.append(n)

        thread = threading.Thread(target=count)
        thread.start()
        calls, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            call()
            calls += 1
        stop.set()
        thread.join()
        elapsed = time.perf_counter() - start
        print(f"{name}: {1e3 * elapsed / calls:.2f} ms per call; counting thread "
              f"{counted[0] / elapsed / 1e6:.2f} M iterations/s; load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="480x360,1920x1080", help="frame sizes WxH, comma-separated")
    parser.add_argument("--frames", type=int, default=40, help="timed frames per path and size")
    parser.add_argument("--publish", action="store_true",
                        help="publish to a subscriber process (LARGE_DATA) instead of serialising only")
    parser.add_argument("--gil", action="store_true",
                        help="only: how much of publishing holds the GIL (a counting thread's rate)")
    parser.add_argument("--log-dir", default="/tmp/slimseg_bench_outputs", help="the subscriber's log")
    parser.add_argument("--subscribe", metavar="NAMESPACE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscribe:
        subscriber(args.subscribe)
        return 0
    cv2.setNumThreads(1)  # the node's worker is one thread; OpenCV's pool would only blur the comparison
    rng = np.random.default_rng(0)
    palette = make_palette(rng.integers(0, 256, (11, 3)).tolist())
    blocks = cv2.resize(rng.integers(0, 11, (45, 60), dtype=np.uint8), NETWORK[::-1],
                        interpolation=cv2.INTER_NEAREST)  # regions, as a segmentation has
    close: Callable[[], None] = lambda: None  # noqa: E731
    send: Callable[[str, Image], object] = lambda _topic, msg: serialize_message(msg)  # noqa: E731
    if args.publish or args.gil:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        send, close = publisher(Path(args.log_dir))
    if args.gil:
        try:
            gil_probe(send)
        finally:
            close()
        return 0
    paths = {"labels only": Path_(palette, None, send),
             **{vis: Path_(palette, vis, send) for vis in VISUALIZATION_SIZES}}
    check = Path_(palette, "input", lambda _topic, msg: serialize_message(msg))
    how = "published to a subscriber process (LARGE_DATA)" if args.publish else "serialised"
    print(f"load average {os.getloadavg()[0]:.1f} at the start; cv2 threads 1; messages {how}")
    names = ["d05dd1f", *paths]
    print("| frame | " + " | ".join(f"{n} p50 ms" for n in names) + " | " +
          " | ".join(f"{n} / labels only" for n in names if n != "labels only") + " |")
    print("|---" * (2 * len(names)) + "|")
    steps: dict[str, dict[str, float]] = {}
    try:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            geometry = fit((h, w), NETWORK, "stretch")
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            network_input = to_network(rgb, geometry)
            old, new = before(rgb, blocks, geometry, palette), check(rgb, network_input, blocks, geometry)
            if [deserialize_message(m, Image) for m in old] != [deserialize_message(m, Image) for m in new]:
                raise SystemExit(f"{size}: d05dd1f's path and the input path publish different messages")
            times: dict[str, list[float]] = {name: [] for name in names}
            stages: dict[str, dict[str, list[float]]] = {name: {} for name in paths}
            for _ in range(args.frames):
                for name in names:
                    t0 = time.perf_counter()
                    if name == "d05dd1f":
                        before(rgb, blocks, geometry, palette)
                    else:
                        paths[name](rgb, network_input, blocks, geometry, stages[name])
                    times[name].append(1e3 * (time.perf_counter() - t0))
            p50 = {name: float(np.median(v)) for name, v in times.items()}
            base = p50["labels only"]
            print(f"| {w}x{h} | " + " | ".join(f"{p50[n]:.2f}" for n in names) + " | " +
                  " | ".join(f"{p50[n] / base:.2f}x" for n in names if n != "labels only") + " |")
            for name, collected in stages.items():
                steps[f"{name}, {size}"] = {k: float(np.median(v)) for k, v in collected.items()}
    finally:
        close()
    for what, row in steps.items():
        print(f"{what}, per step (p50 ms): " + ", ".join(f"{k} {ms:.2f}" for k, ms in row.items()))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
