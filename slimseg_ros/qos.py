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
# Viewer outputs (~/color, ~/overlay): the newest frame is what matters, 2 samples of history.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
# Data outputs (~/labels and their ~/camera_info), which consumers want for every frame. The writer's history
# is its repair window: a sample a reader has not acknowledged is lost once `depth` newer ones are published.
# With 2, a reader starved of CPU for ~0.5 s (a shared core) lost bursts of 2-4 label maps at 5 Hz (the rmw
# reported them as message_lost); 10 samples cover ~2 s at 5 Hz, 0.7 s at 15 Hz.
LABELS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# ~/width and ~/class_info: a late subscriber still gets the last value.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
