"""Frame sources for the demo: a CamVid split, an image folder, a video file, or the shipped frames.

Every source yields `Frame(name, rgb, label)`: RGB uint8 HxWx3 (camera order, as the node receives it) and,
where a ground-truth label map exists beside the image (CamVid `<split>annot/<stem>.png`), that label map, so
the demo can caption its montage with real mIoU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slimseg_ros.errors import SlimsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
SHIPPED_DIR = Path(__file__).resolve().parent / "demo_frames"


@dataclass
class Frame:
    """One camera frame and, when known, its ground-truth label map."""

    name: str
    rgb: np.ndarray
    label: np.ndarray | None = None


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SlimsegError(f"cannot read image {path}", "is it a valid JPEG/PNG file?")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _label_for(image: Path, label_dir: Path | None) -> np.ndarray | None:
    if label_dir is None:
        return None
    path = label_dir / f"{image.stem}.png"
    if not path.is_file():
        return None
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if label is None or label.ndim != 2 else label


def _image_folder(folder: Path, label_dir: Path | None, limit: int | None) -> Iterator[Frame]:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SlimsegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}", "pass a folder of frames")
    for path in images[:limit]:
        yield Frame(path.stem, _read_rgb(path), _label_for(path, label_dir))


def _video(path: Path, limit: int | None) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SlimsegError(f"cannot open video {path}", "is OpenCV able to decode this format?")
    try:
        index = 0
        while limit is None or index < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            yield Frame(f"{path.stem}_{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()


def open_frames(
    source: str | Path | None = None,
    data: str | Path | None = None,
    split: str = "val",
    limit: int | None = None,
) -> Iterator[Frame]:
    """Frames in playback order: `source` (folder or video) wins, then `data`/`split`, else shipped frames."""
    if source is not None:
        path = Path(source)
        if path.is_dir():
            return _image_folder(path, None, limit)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            return _video(path, limit)
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            return iter([Frame(path.stem, _read_rgb(path))])
        raise SlimsegError(f"--source {path} is neither an image folder, an image nor a video file",
                           f"videos: {', '.join(VIDEO_SUFFIXES)}")
    if data is not None:
        root = Path(data)
        folder = root / split
        if not folder.is_dir():
            raise SlimsegError(f"no split folder {folder}", f"--data must hold {split}/ and {split}annot/")
        return _image_folder(folder, root / f"{split}annot", limit)
    return _image_folder(SHIPPED_DIR / "images", SHIPPED_DIR / "labels", limit)
