"""Pictures the demo leaves behind: per-width montage, timeline plot, animated overlays.

Kept apart from the ROS side so the figures can be regenerated from a recorded timeline (JSON) alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slimseg_ros.visualize import overlay_labels


@dataclass
class WidthResult:
    """One width's output on the montage frame, with the figures printed under it."""

    width: float
    labels: np.ndarray
    miou: float | None
    gflops: float | None
    latency_ms: float


def miou(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int) -> float:
    """Mean IoU over classes present in the ground truth or the prediction (void pixels ignored)."""
    valid = gt != ignore_index
    p, g = pred[valid].astype(np.int64), gt[valid].astype(np.int64)
    conf = np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def _caption(tile: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Stack a white caption band under a tile (cv2 text keeps matplotlib out of this path)."""
    band = np.full((22 * len(lines) + 8, tile.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (8, 22 * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1,
                    cv2.LINE_AA)
    return np.vstack([tile, band])


def montage(rgb: np.ndarray, results: Sequence[WidthResult], palette: np.ndarray, path: Path,
            alpha: float = 0.5) -> Path:
    """Input frame beside its overlay at every width, captioned with mIoU, GFLOPs and latency."""
    tiles = [_caption(rgb, ["input frame", ""])]
    for r in results:
        first = f"width {r.width:g}" + (f"  mIoU {100 * r.miou:.1f}%" if r.miou is not None else "")
        second = (f"{r.gflops:.2f} GFLOPs  " if r.gflops is not None else "") + f"{r.latency_ms:.1f} ms"
        tiles.append(_caption(overlay_labels(rgb, r.labels, palette, alpha), [first, second]))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row = tiles[0]
    for tile in tiles[1:]:
        row = np.hstack([row, gap, tile])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    return path


def timeline(samples: Sequence[dict], path: Path, phases: Sequence[tuple[float, str]] = ()) -> Path:
    """Battery, chosen width, achieved fps and latency against time, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t"] for s in samples], dtype=float)
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    series = [
        ("battery", "battery [%]", lambda s: 100 * s["battery"] if s.get("battery") is not None else np.nan),
        ("width", "width", lambda s: s.get("width", np.nan)),
        ("fps", "output fps", lambda s: s.get("fps", np.nan)),
        ("latency", "latency [ms]", lambda s: s.get("latency_ms", np.nan)),
    ]
    for ax, (key, label, get) in zip(axes, series, strict=True):
        values = np.array([get(s) for s in samples], dtype=float)
        if key == "width":
            ax.step(t, values, where="post", color="tab:purple")
            ax.set_ylim(0, 1.1)
        else:
            ax.plot(t, values, lw=1.2)
        if key == "fps":
            targets = np.array([s.get("target_fps") or np.nan for s in samples], dtype=float)
            if np.isfinite(targets).any():
                ax.plot(t, targets, "--", color="tab:red", lw=1, label="target fps")
                ax.legend(loc="lower left", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        for start, name in phases:
            ax.axvline(start, color="grey", ls=":", lw=1)
            if key == "battery":
                ax.text(start, 102, f" {name}", fontsize=8, va="bottom")
    axes[-1].set_xlabel("time [s]")
    fig.suptitle("slimseg demo: width follows battery, then the frame-rate target under load")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def animation(frames: Sequence[np.ndarray], path: Path, fps: float = 5.0, max_width: int = 320) -> Path:
    """Animated GIF of overlay frames (Pillow ships with matplotlib), downscaled to stay small."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to animate")
    scale = min(1.0, max_width / frames[0].shape[1])
    if scale < 1:
        frames = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]
    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
