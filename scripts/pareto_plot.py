#!/usr/bin/env python3
"""docs/img/pareto.png: dev-split mIoU against measured ONNX Runtime CPU latency, per width and model.

Each model is exported per width at the comparison's network size and timed with `slimseg bench`
(onnxruntime-cpu, one thread, real CamVid frames); accuracy comes from its `slimseg eval` JSON on the dev
split. Exports, bench manifests and evals are cached under --work, so a rerun only plots.

    python scripts/pareto_plot.py            # after scripts/campaign_dev.py has finished its arms
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_SPLIT = "train:0001TP"
# label -> (checkpoint stems relative to --runs, eval JSON relative to --runs or None to evaluate, style).
# The old model is the ResNet-18 checkpoint shipped before the Lite0 one (git show 0701d60:models/...).
# The independent nets have exactly the slimmable model's per-width sub-network shapes (same channels, same
# FLOPs), so their latency is the slimmable model's, measured once: two benches of one graph would differ
# only by the shared machine's noise.
SAME_GRAPHS = {"independent Lite0 (one model per width)": "SlimSeg Lite0 (one slimmable model)"}
MODELS = {
    "SlimSeg Lite0 (one slimmable model)": (
        ["dev/slimseg_s0/final"], "dev/slimseg_s0/eval_dev.json", "o-"),
    "independent Lite0 (one model per width)": (
        [f"dev/independent_s0/final_w{w}" for w in ("0.25", "0.5", "0.75", "1")],
        "dev/independent_s0/eval_dev.json", "s--"),
    "old shipped ResNet-18 SlimSeg, from scratch, 1400 steps (saw these frames: optimistic)": (
        ["old_r18/slimseg_camvid_r18"], None, "^:"),
    "new shipped Lite0 SlimSeg, train+val, 1000 steps (saw these frames: optimistic)": (
        ["../models/slimseg_camvid_lite0"], "../models/slimseg_camvid_lite0.dev.eval.json", "D-."),
}


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "slimseg_ros.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def latency(stem: Path, work: Path, size: tuple[int, int], data: str, frames: int) -> dict[float, float]:
    """p50 ms per width of one checkpoint: export once, bench once (results kept in the manifest)."""
    out = work / "_".join(stem.parts[-2:])
    manifest = out / "manifest.yaml"
    if not manifest.exists():
        cli("export", "--ckpt", str(stem), "--out", str(out), "--height", str(size[0]),
            "--width", str(size[1]))
    def ort(entry: dict) -> dict | None:
        return next((v for k, v in (entry.get("latency") or {}).items() if k.startswith("onnxruntime")), None)

    doc = yaml.safe_load(manifest.read_text())
    if not all(ort(m) for m in doc["widths"]):
        cli("bench", "--manifest", str(manifest), "--backend", "onnxruntime-cpu", "--threads", "1",
            "--frames", str(frames), "--data", data, "--update-manifest")
        doc = yaml.safe_load(manifest.read_text())
    return {float(m["width"]): float(ort(m)["p50_ms"]) for m in doc["widths"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/camvid"))
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="folder holding dev/ (campaign) and old_r18/")
    ap.add_argument("--work", default=str(ROOT / "runs/pareto"))
    ap.add_argument("--size", nargs=2, type=int, default=[176, 240], metavar=("H", "W"))
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "docs/img/pareto.png"))
    args = ap.parse_args()
    work, runs = Path(args.work), Path(args.runs)
    work.mkdir(parents=True, exist_ok=True)
    points: dict[str, list[tuple[float, float, float]]] = {}
    lats: dict[str, dict[float, float]] = {}
    for label, (stems, eval_json, _) in MODELS.items():
        lat: dict[float, float] = {}
        if label in SAME_GRAPHS:
            lat = lats[SAME_GRAPHS[label]]
        else:
            for stem in stems:
                lat.update(latency(runs / stem, work, tuple(args.size), args.data, args.frames))
        lats[label] = lat
        ev = runs / eval_json if eval_json else work / (stems[0].replace("/", "_") + "_eval_dev.json")
        if not ev.exists():
            cli("eval", *[a for s in stems for a in ("--ckpt", str(runs / s))], "--data", args.data,
                "--split", DEV_SPLIT, "--size", str(args.size[0]), str(args.size[1]), "--device", "cpu",
                "--out", str(ev))
        acc = json.loads(ev.read_text())["widths"]
        points[label] = [(w, lat[w], 100 * acc[f"{w:g}"]["miou"]) for w in sorted(lat)]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for label, pts in points.items():
        style = MODELS[label][2]
        ax.plot([p[1] for p in pts], [p[2] for p in pts], style, label=label, markersize=7)
        for w, x, y in pts:
            ax.annotate(f"{w:g}", (x, y), textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.set_xlabel(f"ONNX Runtime CPU latency, 1 thread, p50 ms ({args.size[1]}x{args.size[0]} input)")
    ax.set_ylabel(f"mIoU % on sequence 0001TP ({DEV_SPLIT})")
    ax.set_title("Accuracy vs measured latency per width (labels: width)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out)
    (work / "pareto.json").write_text(json.dumps(points, indent=1))
    print(f"wrote {args.out}")
    for label, pts in points.items():
        print(label, " ".join(f"w{w:g}: {ms:.1f} ms {m:.1f}%" for w, ms, m in pts))


if __name__ == "__main__":
    main()
