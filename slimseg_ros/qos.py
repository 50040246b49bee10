"""The QoS profiles of the node's topics, defined once: the node, the demo, the bench and the tests use these.

A peer that subscribes or publishes with another profile may silently not match (best effort cannot read
from reliable-only, volatile misses latched samples), so every side imports them from here.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Camera input, default: sensor data (best effort, newest frame only).
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Camera input with `reliable_qos: true`.
RELIABLE_INPUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE
)
# Outputs: reliable publishers serve both reliable (rviz default) and best-effort subscribers.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
# ~/width and ~/class_info: a late subscriber still gets the last value.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
