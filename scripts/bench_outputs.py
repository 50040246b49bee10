#!/usr/bin/env python3
"""The node's output path per frame (labels, colour, overlay), before and after issue 15, interleaved.

Before (d05dd1f): labels resized to the frame, `palette[labels]` at the frame size, a new blended image, and
each image copied into a new `array.array` message. After: colours by `cv2.LUT` at the network size and
one nearest upsample, the overlay blended into a reused buffer, all written into reused messages
(`ImageBuffer`). Both end in `serialize_message`, which is what rclpy's publish does with the message (its C
conversion plus CDR serialisation), so rclpy's own copies are counted too. Prints p50 ms per path and the
ratio; the outputs of the two paths are compared pixel for pixel first.

    python scripts/bench_outputs.py --sizes 480x360,1920x1080 --frames 40
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from slimseg_ros.image_codec import ImageBuffer, fill_image
from slimseg_ros.resize import fit, labels_to_frame
from slimseg_ros.visualize import colorize, make_palette, overlay

NETWORK = (360, 480)
VOID = 11


def before(rgb: np.ndarray, labels: np.ndarray, geometry, palette: np.ndarray) -> list:
    """The d05dd1f path: frame-size fancy-index colours, new arrays, array.array copies."""
    frame_labels = labels_to_frame(labels, geometry, VOID)
    color = palette[frame_labels]
    blended = cv2.addWeighted(color, 0.5, rgb, 0.5, 0.0)
    msgs = [fill_image(Image(), frame_labels, "mono8"), fill_image(Image(), color, "rgb8"),
            fill_image(Image(), blended, "rgb8")]
    return [serialize_message(m) for m in msgs]


class After:
    """The node's path now (SlimsegNode._publish_outputs without the publishers)."""

    def __init__(self, palette: np.ndarray) -> None:
        self.palette = palette
        self.void_color = tuple(int(v) for v in palette[VOID])
        self.out = {name: ImageBuffer(Image, enc) for name, enc in
                    (("labels", "mono8"), ("color", "rgb8"), ("overlay", "rgb8"))}

    def __call__(self, rgb: np.ndarray, labels: np.ndarray, geometry, stages: dict | None = None) -> list:
        """The path; `stages` (name -> list) also collects each step's ms."""
        clock = [time.perf_counter()]

        def mark(name: str) -> None:
            clock.append(time.perf_counter())
            if stages is not None:
                stages.setdefault(name, []).append(1e3 * (clock[-1] - clock[-2]))

        header = Image().header
        labels_to_frame(labels, geometry, VOID, out=self.out["labels"].pixels(geometry.frame))
        mark("labels resize")
        shape = (*geometry.frame, 3)
        small = colorize(labels, self.palette)
        mark("colour LUT (network size)")
        color = labels_to_frame(small, geometry, self.void_color, out=self.out["color"].pixels(shape))
        mark("colour upsample")
        overlay(rgb, color, 0.5, out=self.out["overlay"].pixels(shape))
        mark("overlay blend")
        out = []
        for key in ("labels", "color", "overlay"):
            out.append(serialize_message(self.out[key].message(header)))
            mark(f"serialise {key}")
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="480x360,1920x1080", help="frame sizes WxH, comma-separated")
    parser.add_argument("--frames", type=int, default=40, help="timed frames per path and size")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # the node's worker is one thread; OpenCV's pool would only blur the comparison
    rng = np.random.default_rng(0)
    palette = make_palette(rng.integers(0, 256, (11, 3)).tolist())
    blocks = cv2.resize(rng.integers(0, 11, (45, 60), dtype=np.uint8), NETWORK[::-1],
                        interpolation=cv2.INTER_NEAREST)  # regions, as a segmentation has
    after = After(palette)
    print(f"load average {os.getloadavg()[0]:.1f} at the start; cv2 threads 1")
    steps: dict[str, dict[str, float]] = {}
    print("| frame | before p50 ms | after p50 ms | after / before |")
    print("|---|---|---|---|")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        geometry = fit((h, w), NETWORK, "stretch")
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        old, new = before(rgb, blocks, geometry, palette), after(rgb, blocks, geometry)
        if [deserialize_message(m, Image) for m in old] != [deserialize_message(m, Image) for m in new]:
            raise SystemExit(f"{size}: the two paths publish different messages")
        times: dict[str, list[float]] = {"before": [], "after": []}
        stages: dict[str, list[float]] = {}
        for _ in range(args.frames):
            for name in ("before", "after"):
                t0 = time.perf_counter()
                if name == "before":
                    before(rgb, blocks, geometry, palette)
                else:
                    after(rgb, blocks, geometry, stages)
                times[name].append(1e3 * (time.perf_counter() - t0))
        b, a = np.median(times["before"]), np.median(times["after"])
        print(f"| {w}x{h} | {b:.2f} | {a:.2f} | {a / b:.2f} |")
        steps[size] = {name: float(np.median(v)) for name, v in stages.items()}
    for size, row in steps.items():
        print(f"after, {size}, per step (p50 ms): " + ", ".join(f"{k} {ms:.2f}" for k, ms in row.items()))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
