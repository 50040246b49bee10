"""The demo as a video: camera input beside the node's latest output, stamped with what the node was doing.

Rebuilt after the run from the record (publish times, label maps by stamp, live samples), so nothing is
drawn or encoded while the node is being measured. The MP4 plays in real time at the camera rate (an output
that lags or pauses shows as a frozen right half); the GIF is a short time-lapse preview of the same frames.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slimseg_ros.manifest import same_width
from slimseg_ros.visualize import overlay_labels

# What each frame is stamped with (the README's caption and the tests read this list).
STAMP_FIELDS = ("width", "policy", "battery", "fps", "latency", "phase", "t")
BAND_PX = 88
BLOCK = 16  # H.264 macro block: both sides are padded to a multiple of it
SWITCH_BANNER_S = 2.0
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, YELLOW, GREY = (255, 255, 255), (0, 0, 0), (255, 215, 0), (90, 90, 90)


@dataclass
class Track:
    """What the animation needs from a run: the clip, what was published when, and what came back when."""

    frames: Sequence[np.ndarray]     # the clip, RGB
    publish_t: Sequence[float]       # per published frame
    publish_frame: Sequence[int]     # per published frame: index into `frames`
    label_index: Sequence[int]       # per label map (arrival order): the published frame it belongs to
    label_t: Sequence[float]
    labels: Sequence[bytes]          # PNG-compressed label maps
    samples: Sequence[Mapping]       # live figures (demo_driver.DemoDriver.stats) in time order
    switches: Sequence[Mapping]      # t, previous, width, short
    phases: Sequence[Mapping]        # t, key, name


def stamp_values(sample: Mapping, phase: str, n_widths: int) -> dict[str, str]:
    """The stamped fields as text; before the first output they say so instead of showing None or nan."""
    battery = "unknown" if sample.get("battery") is None else f"{100 * sample['battery']:.0f}%"
    policy = sample.get("policy") or "-"
    if sample.get("target_fps"):
        policy += f" (target {sample['target_fps']:g} fps)"
    values = {"policy": policy, "battery": battery, "phase": phase, "t": f"{sample['t']:.1f} s"}
    if sample.get("width") is None:
        values.update(width=f"starting (loading {n_widths} widths)", fps="-", latency="-")
    else:
        latency = sample.get("latency_ms")
        values.update(width=f"{sample['width']:g}", fps=f"{sample.get('fps_out') or 0:.1f} fps",
                      latency="-" if latency is None or not math.isfinite(latency) else f"{latency:.0f} ms")
    return values


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color=WHITE, thick: int = 1,
          bg: tuple[int, int, int] | None = None) -> None:
    if bg is not None:
        (w, h), base = cv2.getTextSize(text, FONT, scale, thick)
        cv2.rectangle(img, (org[0] - 4, org[1] - h - 5), (org[0] + w + 4, org[1] + base + 3), bg, -1)
    cv2.putText(img, text, org, FONT, scale, color, thick, cv2.LINE_AA)


def _gauge(img: np.ndarray, widths: Sequence[float], current: float | None, flash: bool, right: int) -> None:
    """One box per width, the running one filled: a switch is seen as the fill moving."""
    box, gap = 46, 6
    x0 = right - len(widths) * (box + gap)
    for i, w in enumerate(widths):
        x = x0 + i * (box + gap)
        active = current is not None and same_width(w, current)
        fill = (YELLOW if flash else WHITE) if active else (45, 45, 45)  # survive the GIF's 64 colours
        cv2.rectangle(img, (x, 14), (x + box, 44), fill, -1)
        cv2.rectangle(img, (x, 14), (x + box, 44), (160, 160, 160), 1)
        _text(img, f"{w:g}", (x + 6, 36), 0.5, BLACK if active else WHITE)
    _text(img, "width", (x0, 62), 0.45, (180, 180, 180))


def frame_count(track: Track, fps: float) -> int:
    """Video frames from the demo's start to just after the last frame in or out."""
    return int((max([*track.publish_t, *track.label_t, 0.0]) + 0.5) * fps)


def compose(track: Track, widths: Sequence[float], palette: np.ndarray, fps: float,
            alpha: float = 0.5) -> Iterator[tuple[np.ndarray, dict[str, str]]]:
    """Each video frame (RGB, both sides a multiple of 16 px) with the stamp drawn on it, one at a time."""
    h0, w0 = track.frames[0].shape[:2]
    tile_w = int(min(max(w0, 320), 640))
    tile_h = int(round(h0 * tile_w / w0))
    width = -(-2 * tile_w // BLOCK) * BLOCK
    height = -(-(BAND_PX + tile_h) // BLOCK) * BLOCK
    tiles = [cv2.resize(f, (tile_w, tile_h), interpolation=cv2.INTER_AREA) for f in track.frames]
    sample_t = [s["t"] for s in track.samples]
    phase_t = [p["t"] for p in track.phases]
    cache: dict[int, np.ndarray] = {}
    for n in range(frame_count(track, fps)):
        t = n / fps
        canvas = np.zeros((height, width, 3), np.uint8)
        canvas[:BAND_PX] = (25, 25, 25)
        pub = bisect.bisect_right(track.publish_t, t) - 1
        if pub >= 0:
            canvas[BAND_PX:BAND_PX + tile_h, :tile_w] = tiles[track.publish_frame[pub]]
        _text(canvas, "camera input", (8, BAND_PX + 22), 0.55, WHITE, 1, BLACK)
        out = bisect.bisect_right(track.label_t, t) - 1
        right = canvas[BAND_PX:BAND_PX + tile_h, tile_w:2 * tile_w]
        sample = track.samples[max(bisect.bisect_right(sample_t, t) - 1, 0)]
        phase = track.phases[bisect.bisect_right(phase_t, t) - 1] if phase_t and t >= phase_t[0] else None
        values = stamp_values({**sample, "t": t}, phase["name"] if phase else "starting", len(widths))
        if out >= 0:
            if out not in cache:
                cache.clear()
                labels = cv2.imdecode(np.frombuffer(track.labels[out], np.uint8), cv2.IMREAD_UNCHANGED)
                source = track.frames[track.publish_frame[track.label_index[out]]]
                if labels is None or labels.shape != source.shape[:2]:  # labels at the network size
                    labels = cv2.resize(labels, source.shape[1::-1], interpolation=cv2.INTER_NEAREST)
                cache[out] = cv2.resize(overlay_labels(source, labels, palette, alpha), (tile_w, tile_h),
                                        interpolation=cv2.INTER_AREA)
            right[:] = cache[out]
            if phase is not None and phase["key"] == "paused":
                right[:] = (right * 0.45).astype(np.uint8)
                _text(right, "paused (~/enable false)", (12, tile_h // 2), 0.7, YELLOW, 2)
        else:
            right[:] = (40, 40, 40)
            _text(right, values["width"], (12, tile_h // 2), 0.6, YELLOW, 1)
        _text(canvas, "slimseg_node output", (tile_w + 8, BAND_PX + 22), 0.55, WHITE, 1, BLACK)
        recent = [s for s in track.switches if 0 <= t - s["t"] < SWITCH_BANNER_S]
        if recent:
            s = recent[-1]
            _text(canvas, f"width {s['previous']:g} -> {s['width']:g}: {s['short']}",
                  (tile_w + 10, BAND_PX + tile_h - 14), 0.6, BLACK, 2, YELLOW)
        shown = values["width"] if out < 0 else f"width {values['width']}"  # "starting (loading N widths)"
        _text(canvas, f"{shown}   policy {values['policy']}   battery {values['battery']}", (10, 32), 0.62)
        _text(canvas, f"output {values['fps']}   latency {values['latency']}   phase: {values['phase']}   "
              f"t {values['t']}", (10, 66), 0.55, (200, 200, 200), 1)
        current = None if sample.get("width") is None else float(sample["width"])
        _gauge(canvas, widths, current, bool(recent), width - 10)
        yield canvas, values


def render(track: Track, widths: Sequence[float], palette: np.ndarray, fps: float, mp4: Path, gif: Path,
           gif_frames: int = 60, gif_width: int = 640, gif_frame_ms: int = 150) -> dict:
    """Stream the frames into the MP4 (H.264, real time) and every n-th into the GIF preview (time-lapse).

    Returns what was written: sizes, frame counts and every frame's stamp.
    """
    import imageio_ffmpeg
    from PIL import Image

    total = frame_count(track, fps)
    if total == 0:
        raise ValueError("nothing to animate: no frame was published")
    step = max(1, math.ceil(total / gif_frames))
    stamps, preview = [], []
    writer = None
    for n, (frame, values) in enumerate(compose(track, widths, palette, fps)):
        if writer is None:
            mp4.parent.mkdir(parents=True, exist_ok=True)
            writer = imageio_ffmpeg.write_frames(
                str(mp4), frame.shape[1::-1], fps=fps, codec="libx264", quality=None, macro_block_size=BLOCK,
                ffmpeg_log_level="error",
                output_params=["-crf", "32", "-preset", "veryfast", "-movflags", "+faststart"],
            )
            writer.send(None)
            size = frame.shape[1::-1]
        writer.send(np.ascontiguousarray(frame))
        stamps.append(values)
        if n % step == 0:
            scale = gif_width / frame.shape[1]
            preview.append(Image.fromarray(cv2.resize(frame, None, fx=scale, fy=scale,
                                                      interpolation=cv2.INTER_AREA)))
    writer.close()
    gif.parent.mkdir(parents=True, exist_ok=True)
    # 64 colours without dithering: a third of the adaptive palette's size, still legible
    preview = [im.quantize(64, dither=Image.Dither.NONE) for im in preview]
    preview[0].save(gif, save_all=True, append_images=preview[1:], duration=gif_frame_ms, loop=0,
                    optimize=True)
    return {"mp4": str(mp4), "gif": str(gif), "fps": fps, "frames": total, "size": list(size),
            "gif_frames": len(preview), "gif_size": list(preview[0].size),
            "gif_speedup": round(step / fps * 1000 / gif_frame_ms, 1), "fields": list(STAMP_FIELDS),
            "stamps": stamps}
