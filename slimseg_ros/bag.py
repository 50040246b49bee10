"""rosbag2 files without a ROS install: read a camera topic from a user's bag, write the node's outputs.

Users test perception on recorded bags, so the demo plays one through the real node and records what the node
publishes. Both directions go through `rosbags` (pure Python, PyPI): it reads sqlite3 and MCAP bags and
writes rosbag2 MCAP the way `ros2 bag record` does (a folder with metadata.yaml beside the .mcap file, the
message definitions embedded as ros2msg schemas), which `ros2 bag play` and Foxglove open. Messages stay in
their serialized CDR form on both sides: what is played is byte for byte what was recorded.

This module imports no rclpy; `rosbags` is imported only when a bag is used, so the runtime starts without it
and a bag feature without it names what to install.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slimseg_ros import deps
from slimseg_ros.errors import SlimsegError

# image message type in the bag -> how the node takes it (its `compressed` parameter and input topic)
IMAGE_TYPES = {"sensor_msgs/msg/Image": "image", "sensor_msgs/msg/CompressedImage": "image/compressed"}
STORAGES = ("mcap", "sqlite3")


def _require() -> None:
    """The bag libraries, or one line naming what to install."""
    deps.require(["rosbags"])


def _typestore():
    """Message definitions of the ROS 2 distribution whose wheels this package pins (Kilted)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def bag_folder(path: str | Path) -> Path:
    """The rosbag2 folder for a path to it or to one of its files (users often pass the .mcap or .db3)."""
    path = Path(path)
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        return path.parent
    if not path.exists():
        raise SlimsegError(f"no bag at {path}", "pass a rosbag2 folder (with metadata.yaml) or its file")
    return path


@dataclass(frozen=True)
class BagMessage:
    """One serialized message: when the bag received it, its header stamp, and its CDR bytes."""

    t_ns: int
    stamp: tuple[int, int]
    data: bytes


@dataclass(frozen=True)
class TopicInfo:
    """A topic of a bag: name, message type and message count."""

    name: str
    msgtype: str
    count: int


class ImageBag:
    """The camera topic of a rosbag2 (sqlite3 or MCAP): which topic, how many frames, and the frames in order.

    Without `topic` the bag must hold exactly one Image or CompressedImage topic; otherwise the error lists
    them, so the user can pick one with --topic.
    """

    def __init__(self, path: str | Path, topic: str | None = None) -> None:
        _require()
        from rosbags.highlevel import AnyReader

        self.path = bag_folder(path)
        try:
            self._reader = AnyReader([self.path], default_typestore=_typestore())
            self._reader.open()
        except Exception as exc:  # rosbags raises its own types for every kind of unreadable bag
            raise SlimsegError(f"cannot read bag {self.path}: {exc}",
                               "is it a rosbag2 folder (sqlite3 or MCAP)?") from exc
        counts: dict[tuple[str, str], int] = {}
        for c in self._reader.connections:
            counts[(c.topic, c.msgtype)] = counts.get((c.topic, c.msgtype), 0) + c.msgcount
        self.topics = [TopicInfo(t, m, n) for (t, m), n in sorted(counts.items())]
        images = [t for t in self.topics if t.msgtype in IMAGE_TYPES]
        listed = ", ".join(f"{t.name} ({t.msgtype.rsplit('/', 1)[-1]}, {t.count})" for t in images) or "none"
        if topic is not None:
            chosen = [t for t in images if t.name == topic]
            if not chosen:
                raise SlimsegError(f"bag {self.path} has no image topic {topic}; its image topics: {listed}",
                                   "pass one of them with --topic")
        elif len(images) != 1:
            raise SlimsegError(f"bag {self.path} has {len(images)} image topics: {listed}",
                               "pick one with --topic" if images else "it needs sensor_msgs/Image or "
                               "CompressedImage messages")
        else:
            chosen = images
        self.topic = chosen[0]
        self.input = IMAGE_TYPES[self.topic.msgtype]
        self._connections = [c for c in self._reader.connections
                             if c.topic == self.topic.name and c.msgtype == self.topic.msgtype]
        if self.topic.count == 0:
            raise SlimsegError(f"topic {self.topic.name} in {self.path} has no messages")

    @property
    def compressed(self) -> bool:
        """Whether the node must take this bag on its compressed input."""
        return self.input == "image/compressed"

    def messages(self) -> Iterator[BagMessage]:
        """The topic's messages in receive order, still serialized; the header stamp read from each."""
        for connection, t_ns, raw in self._reader.messages(connections=self._connections):
            header = self._reader.deserialize(raw, connection.msgtype).header
            yield BagMessage(int(t_ns), (int(header.stamp.sec), int(header.stamp.nanosec)), bytes(raw))

    def close(self) -> None:
        """Close the bag's files."""
        self._reader.close()

    def __enter__(self) -> ImageBag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BagWriter:
    """A new rosbag2 written from serialized messages, thread-safe (ROS callbacks write from their threads).

    MCAP by default (what Foxglove opens directly); `storage="sqlite3"` for older ROS 2 tools. Each topic is
    registered with its message definition and the QoS it was offered with, so `ros2 bag play` republishes
    latched topics (~/width, ~/class_info) latched.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        _require()
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise SlimsegError(f"bag storage {storage!r} is not one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise SlimsegError(f"{self.path} exists", "a bag is written as a new folder: pass a new path")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._typestore = _typestore()
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str, *, reliable: bool = True, latched: bool = False,
                  depth: int = 1) -> None:
        """Register a topic (type as 'pkg/msg/Name') and the QoS its publisher offers."""
        with self._lock:
            if topic not in self._connections:
                qos = _qos(reliable, latched, depth)
                self._connections[topic] = self._writer.add_connection(
                    topic, msgtype, typestore=self._typestore, offered_qos_profiles=[qos])
                self.counts[topic] = 0

    def write(self, topic: str, t_ns: int, data: bytes) -> None:
        """Append one serialized message received at t_ns (nanoseconds, ROS time)."""
        with self._lock:
            if self._writer is None:
                return  # closed: a callback that fired during shutdown
            self._writer.write(self._connections[topic], int(t_ns), data)
            self.counts[topic] += 1

    def close(self) -> None:
        """Finish the file and write metadata.yaml (a bag is readable only after this)."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _qos(reliable: bool, latched: bool, depth: int):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(sec=0, nsec=0)  # "default": no deadline, lifespan or lease
    return Qos(
        history=QosHistory.KEEP_LAST, depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def serialize(msg: object, msgtype: str) -> bytes:
    """CDR bytes of a rosbags message object (for bags written without ROS, e.g. the demo bag)."""
    return bytes(_typestore().serialize_cdr(msg, msgtype))


def message_types():
    """The rosbags message classes, by ROS type name (for building messages without ROS)."""
    return _typestore().types
