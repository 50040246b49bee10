"""The shipped demo frames as a rosbag2: what a camera driver would have recorded, made by code, not by hand.

`slimseg demo --bag` (no path) and the bag tests play this bag through the real node;
`scripts/make_demo_bag.py` writes it for use elsewhere (`ros2 bag play`, Foxglove). The frames are every 6th
of a 15 fps sequence, so they are stamped 0.4 s apart, as the camera saw them. Stamps start at a fixed time,
so the same frames give the same bag, byte for byte. It is generated when needed rather than committed: raw
rgb8 is 7.5 MB, and the JPEG files it is made of are in the repository already.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from slimseg_ros.bag import BagWriter, message_types, serialize
from slimseg_ros.errors import SlimsegError
from slimseg_ros.frames import IMAGE_SUFFIXES, SHIPPED_DIR

TOPIC = "/camera/image_raw"  # raw; the compressed bag uses TOPIC + "/compressed" as image_transport does
FRAME_ID = "camera"
PERIOD_NS = 400_000_000  # 6 periods of the 15 fps camera
START_NS = 1_700_000_000 * 1_000_000_000  # fixed first stamp: the bag is reproducible


def write_demo_bag(out: str | Path, *, compressed: bool = False, storage: str = "mcap",
                   frames: str | Path = SHIPPED_DIR / "images") -> Path:
    """Write the frames of `frames` (sorted by name) as sensor_msgs/Image rgb8, or as CompressedImage holding
    the JPEG files unchanged; returns the bag folder."""
    paths = sorted(p for p in Path(frames).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SlimsegError(f"no frames in {frames}")
    types = message_types()
    header_t, time_t = types["std_msgs/msg/Header"], types["builtin_interfaces/msg/Time"]
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    topic = TOPIC + "/compressed" if compressed else TOPIC
    with BagWriter(out, storage=storage) as writer:
        writer.add_topic(topic, msgtype, reliable=False)  # a camera driver's sensor-data QoS
        for i, path in enumerate(paths):
            t_ns = START_NS + i * PERIOD_NS
            header = header_t(stamp=time_t(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=FRAME_ID)
            if compressed:
                fmt = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else path.suffix.lower()[1:]
                data = np.frombuffer(path.read_bytes(), np.uint8)  # the file unchanged, as a camera sent it
                msg = types[msgtype](header=header, format=fmt, data=data)
            else:
                rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                h, w = rgb.shape[:2]
                msg = types[msgtype](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0,
                                     step=3 * w, data=rgb.reshape(-1))
            writer.write(topic, t_ns, serialize(msg, msgtype))
    return Path(out)
