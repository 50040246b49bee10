"""The demo's still pictures: every width on one frame (montage), the policy's inputs and decisions.

Kept apart from the ROS side so both can be redrawn from the recorded timeline.json and a frame alone.
matplotlib lays out panels, captions and legends, so they stay readable at the README's width (1000 px).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimseg_ros.demo_summary import DROP_CAUSES
from slimseg_ros.visualize import colorize, make_palette, overlay_labels

FIGURE_WIDTH_PX = 1000
DPI = 100
ERROR_COLOR = (255, 255, 255)  # marks wrong pixels; not a CamVid class colour
CAUSE_COLORS = {"before_first_output": "tab:gray", "shutdown": "tab:brown", "disabled": "tab:olive",
                "replaced": "tab:orange", "at_switch": "tab:red", "lost": "tab:purple"}
# Switch annotations coloured by what triggered them (matched on the node's reason).
REASON_COLORS = (("battery", "tab:green"), ("overrun", "tab:red"), ("stable", "tab:blue"))


@dataclass
class WidthResult:
    """One width's output on the montage frame, with the figures printed beside it."""

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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mark_errors(pred: np.ndarray, gt: np.ndarray, palette: np.ndarray, ignore_index: int) -> np.ndarray:
    """The prediction in class colours; every scored pixel that disagrees with the ground truth in white."""
    rgb = colorize(pred, palette).copy()
    rgb[(gt != ignore_index) & (pred != gt)] = ERROR_COLOR
    return rgb


def montage(rgb: np.ndarray, gt: np.ndarray | None, results: Sequence[WidthResult],
            classes: Sequence[Mapping], ignore_index: int, path: Path, title: str, note: str = "",
            alpha: float = 0.5) -> list[str]:
    """A row per width (overlay, prediction with errors marked); frame, ground truth and legend beside them.

    Returns the panel titles in drawing order, so a caller or a test can tell what the picture holds.
    """
    from matplotlib.patches import Patch

    plt = _pyplot()
    palette = make_palette(classes)
    n = len(results)
    aspect = rgb.shape[0] / rgb.shape[1]
    fig = plt.figure(figsize=(FIGURE_WIDTH_PX / DPI, 1.0 + n * (3.3 * aspect + 0.45)), dpi=DPI)
    grid = fig.add_gridspec(n, 3, left=0.01, right=0.99, top=1 - 0.95 / fig.get_figheight(), bottom=0.01,
                            wspace=0.04, hspace=0.22)
    side = grid[:, 2].subgridspec(3, 1, height_ratios=[1, 1, 1.4], hspace=0.2)
    titles: list[str] = []

    def panel(spec, image: np.ndarray | None, text: str, size: float = 9):
        ax = fig.add_subplot(spec)
        ax.set_axis_off()
        if image is not None:
            ax.imshow(image, interpolation="nearest")
        ax.set_title(text, fontsize=size, loc="left")
        titles.append(text)
        return ax

    for row, r in enumerate(results):
        score = f"mIoU {100 * r.miou:.1f}%" if r.miou is not None else "no ground truth"
        cost = (f"{r.gflops:.2f} GFLOPs  " if r.gflops is not None else "") + f"{r.latency_ms:.1f} ms"
        panel(grid[row, 0], overlay_labels(rgb, r.labels, palette, alpha),
              f"width {r.width:g}:  {score}  {cost}", size=9.5)
        if gt is not None:
            scored = gt != ignore_index
            wrong = float(((r.labels != gt) & scored).sum() / max(int(scored.sum()), 1))
            panel(grid[row, 1], mark_errors(r.labels, gt, palette, ignore_index),
                  f"prediction, errors in white ({100 * wrong:.1f}%)")
        else:
            panel(grid[row, 1], colorize(r.labels, palette), "prediction")
    panel(side[0], rgb, "input frame")
    if gt is not None:
        panel(side[1], colorize(gt, palette), "ground truth")
    else:
        panel(side[1], None, "ground truth: none for this source")
    legend = panel(side[2], None, "legend")
    handles = [Patch(facecolor=np.array(c["color"]) / 255, edgecolor="black", lw=0.4, label=str(c["name"]))
               for c in classes]
    if gt is not None:
        handles.append(Patch(facecolor=np.array(ERROR_COLOR) / 255, edgecolor="black", lw=0.4,
                             label="wrong (!= ground truth)"))
        handles.append(Patch(facecolor=palette[ignore_index] / 255 if 0 <= ignore_index < 256 else "black",
                             edgecolor="black", lw=0.4, label="void (not scored)"))
    legend.legend(handles=handles, loc="upper left", fontsize=8, ncol=2 if len(handles) > 9 else 1,
                  frameon=False, handlelength=1.2, columnspacing=0.8)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left", y=1 - 0.08 / fig.get_figheight(), va="top")
    if note:
        fig.text(0.01, 1 - 0.45 / fig.get_figheight(), note, fontsize=8, ha="left", va="top", color="0.3")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return titles


def _series(rows: Sequence[Mapping], key: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([r["t"] for r in rows], dtype=float)
    v = np.array([np.nan if r.get(key) is None else scale * float(r[key]) for r in rows], dtype=float)
    return t, v


def _reason_color(reason: str) -> str:
    return next((color for word, color in REASON_COLORS if word in reason), "0.35")


def timeline(samples: Sequence[Mapping], diagnostics: Sequence[Mapping], switches: Sequence[Mapping],
             phases: Sequence[Mapping], policy: Mapping, widths: Sequence[float], publish_t: Sequence[float],
             causes: Sequence[str | None], path: Path, title: str = "") -> list[str]:
    """Battery with thresholds, the p50 the policy acted on against its budget, width with each switch's
    reason, input/output fps, and frames without labels by cause; returns the panels' y labels."""
    plt = _pyplot()
    fig, axes = plt.subplots(5, 1, figsize=(FIGURE_WIDTH_PX / DPI, 12.5), dpi=DPI, sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.3, 1.2, 1, 1]})
    end = max([*(s["t"] for s in samples), *publish_t, 1.0])
    for ax in axes:  # phases as alternating bands, named on the top panel
        for i, phase in enumerate(phases):
            stop = phases[i + 1]["t"] if i + 1 < len(phases) else end
            if i % 2:
                ax.axvspan(phase["t"], stop, color="0.93", lw=0)
            ax.axvline(phase["t"], color="0.6", lw=0.6)
        ax.grid(alpha=0.3)
    for i, phase in enumerate(phases):  # names on two rows, so short phases do not overlap
        axes[0].text(phase["t"], 1.02 + 0.12 * (i % 2), f" {phase['name']}", fontsize=8, va="bottom",
                     transform=axes[0].get_xaxis_transform())

    # 1. battery, with the thresholds the battery policy compares it with and the hysteresis above each
    ax = axes[0]
    ax.plot(*_series(samples, "battery", 100), color="tab:green", lw=1.5, label="battery")
    hyst = 100 * float(policy["battery_hysteresis"])
    for i, thr in enumerate(policy["battery_thresholds"]):
        ax.axhline(100 * thr, color="tab:red", lw=0.8)
        ax.axhspan(100 * thr, 100 * thr + hyst, color="tab:red", alpha=0.12, lw=0)
        ax.text(end, 100 * thr + hyst, f"width {widths[i + 1]:g} needs {100 * thr:g}% ", fontsize=7,
                ha="right", va="bottom", color="tab:red")
    ax.plot([], [], color="tab:red", lw=0.8, label="threshold: step down below")
    ax.fill_between([], [], color="tab:red", alpha=0.12, label=f"+{hyst:g}% hysteresis: step up above")
    ax.set_ylim(0, 105)
    ax.set_ylabel("battery [%]")
    ax.legend(loc="lower left", fontsize=7, ncol=3)

    # 2. what the fps policy acted on: its p50 latency against the per-frame budget and the step-up limit
    ax = axes[1]
    t_d, p50 = _series(diagnostics, "policy_p50_ms")
    _, budget = _series(diagnostics, "policy_budget_ms")
    limit = budget * (1.0 - float(policy["fps_margin"]))
    ax.plot(*_series(samples, "latency_ms"), color="0.65", lw=0.8, label="camera-to-labels p50 (demo)")
    ax.plot(t_d, p50, color="tab:blue", lw=1.4, marker=".", ms=3, label="p50 the fps policy acted on")
    ax.step(t_d, budget, where="post", color="tab:red", lw=1.2,
            label="budget = 1 / target fps: step down above")
    ax.step(t_d, limit, where="post", color="tab:orange", lw=1, ls="--",
            label=f"budget - {float(policy['fps_margin']):.0%}: a wider width must fit under it")
    finite = np.concatenate([p50[np.isfinite(p50)], budget[np.isfinite(budget)]])
    if finite.size:
        ax.set_ylim(0, 1.25 * float(np.percentile(finite, 98)))
    ax.set_ylabel("latency [ms]")
    ax.legend(loc="upper left", fontsize=7, ncol=2)

    # 3. the width, each switch annotated with the node's reason
    ax = axes[2]
    t_s, w = _series(samples, "width")
    ax.step(t_s, w, where="post", color="tab:purple", lw=1.5)
    for i, s in enumerate(switches):  # up: text above and to the right; down: below and to the left
        color = _reason_color(s["reason"])
        ax.plot(s["t"], s["width"], "o", color=color, ms=4)
        up = s["width"] > s["previous"]
        offset = (0.05 + 0.07 * (i % 2)) * (1 if up else -1)
        ax.annotate(s["short"], (s["t"], s["width"]), (s["t"], s["width"] + offset), fontsize=7,
                    color=color, ha="left" if up else "right", va="bottom" if up else "top")
    ax.set_yticks(list(widths))
    ax.set_ylim(min(widths) - 0.25, max(widths) + 0.25)
    ax.set_ylabel("width")

    # 4. frames in (camera) and out (labels), with the target of the fps policy
    ax = axes[3]
    ax.plot(*_series(samples, "fps_in"), color="0.5", lw=1, label="camera (input)")
    ax.plot(*_series(samples, "fps_out"), color="tab:blue", lw=1.4, label="labels (output)")
    ax.plot(*_series(samples, "target_fps"), color="tab:red", ls="--", lw=1, label="fps target")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("frames / s")
    ax.legend(loc="lower right", fontsize=7, ncol=3)

    # 5. every frame without labels, by cause, per second
    ax = axes[4]
    bins = np.arange(0.0, np.ceil(end) + 1.0)
    bottom = np.zeros(len(bins) - 1)
    times = np.asarray(publish_t, dtype=float)
    for cause, text in DROP_CAUSES.items():
        mask = np.array([c == cause for c in causes], dtype=bool)
        counts, _ = np.histogram(times[mask] if mask.size else [], bins=bins)
        ax.bar(bins[:-1], counts, width=1.0, align="edge", bottom=bottom, color=CAUSE_COLORS[cause],
               label=f"{text} ({int(mask.sum())})")
        bottom += counts
    ax.set_ylabel("frames without\nlabels / s")
    ax.set_xlabel("time [s]")
    ax.legend(loc="upper center", fontsize=7, ncol=3)
    ax.set_ylim(0, max(1.0, float(bottom.max())) * 1.6)
    ax.set_xlim(0, end)

    fig.suptitle(title or "slimseg demo: what the width policy saw and what it decided", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return [a.get_ylabel() for a in axes]
