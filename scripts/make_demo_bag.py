#!/usr/bin/env python3
"""Write the shipped demo frames (slimseg_ros/demo_frames) as a rosbag2, for `ros2 bag play`, Foxglove or
`slimseg demo --bag`. The same frames give the same bag (fixed stamps, 0.4 s apart as the camera saw them).

    python scripts/make_demo_bag.py demo_bag                              # sensor_msgs/Image rgb8, MCAP
    python scripts/make_demo_bag.py demo_bag_jpeg --compressed --storage sqlite3   # CompressedImage, sqlite3
"""

from __future__ import annotations

import argparse
import sys

from slimseg_ros.bag import STORAGES, ImageBag
from slimseg_ros.demo_bag import write_demo_bag
from slimseg_ros.errors import SlimsegError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="new bag folder")
    parser.add_argument("--compressed", action="store_true",
                        help="sensor_msgs/CompressedImage holding the JPEG files (default: Image rgb8)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap")
    args = parser.parse_args(argv)
    try:
        path = write_demo_bag(args.out, compressed=args.compressed, storage=args.storage)
        with ImageBag(path) as bag:
            print(f"wrote {path}: {bag.topic.name} ({bag.topic.msgtype}, {bag.topic.count} frames, "
                  f"{args.storage})")
    except SlimsegError as exc:
        print(f"make_demo_bag: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
