"""Record a running slimseg_node's outputs to a rosbag2 MCAP (Foxglove, `ros2 bag play`), no ROS tools needed.

Joins the ROS graph in this shell's ROS_DOMAIN_ID, subscribes to the node's label maps, colour mask,
camera_info, width, class table and /diagnostics, and writes them as the node published them until Ctrl-C or
--duration. With a ROS install, `ros2 bag record` does the same; this works from the pip/wheels set-up.

examples:
  slimseg record --out run1                                  # /slimseg_node, until Ctrl-C
  slimseg record --node /robot/slimseg_node --out run1 --duration 60 --overlay
  slimseg record --out run1 --input /camera/image_raw        # the camera topic too, for Foxglove overlays
"""

from __future__ import annotations

import argparse
import os
import time

from slimseg_ros import deps

MATCH_TIMEOUT_S = 10.0  # discovery of the node's ~/labels publisher before recording starts anyway
SETTLE_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `slimseg record`."""
    parser.add_argument("--out", required=True, help="new rosbag2 folder to write (MCAP)")
    parser.add_argument("--node", default="/slimseg_node",
                        help="the node's full name, namespace included (default /slimseg_node)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to record (default: until Ctrl-C)")
    parser.add_argument("--overlay", action="store_true",
                        help="also ~/overlay (the node computes it only while someone subscribes)")
    parser.add_argument("--input", metavar="TOPIC", help="also this sensor_msgs/Image topic (the camera)")


def _spin_until(executor, condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.05)
    return True


def run(args: argparse.Namespace) -> int:
    """Record until --duration or Ctrl-C; the bag is finished (metadata.yaml written) either way."""
    deps.require(["rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rosbags"])
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from slimseg_ros.bag import BagWriter
    from slimseg_ros.bag_record import DEFAULT_OUTPUTS, OutputRecorder

    outputs = DEFAULT_OUTPUTS + (("overlay",) if args.overlay else ())
    writer = BagWriter(args.out)  # refuses an existing path before joining the graph
    rclpy.init()
    node = rclpy.create_node("slimseg_record")
    try:
        recorder = OutputRecorder(node, args.node, writer, outputs)
        if args.input:
            recorder.add_camera(args.input)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        until = f"{args.duration:g} s" if args.duration else "Ctrl-C to stop"
        try:
            labels = recorder.topics[0]
            found = _spin_until(executor, lambda: node.count_publishers(labels) > 0, MATCH_TIMEOUT_S)
            if not found:
                print(f"note: no publisher on {labels} yet (is the node running, in ROS_DOMAIN_ID "
                      f"{os.environ.get('ROS_DOMAIN_ID', '0')}?); recording whatever comes", flush=True)
            _spin_until(executor, lambda: False, SETTLE_S)  # the node's side of the match as well
            print(f"recording {', '.join(recorder.topics)} to {args.out} ({until})", flush=True)
            end = time.monotonic() + args.duration if args.duration else None
            while end is None or time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C: finish the bag, exit 0
            pass
        executor.shutdown()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        writer.close()
    for topic, count in recorder.counts().items():
        print(f"  {topic}: {count}")
    print(f"wrote {args.out}")
    return 0
