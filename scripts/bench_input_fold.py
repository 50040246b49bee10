#!/usr/bin/env python3
"""Input normalisation in the graph vs folded into the first conv, per width, interleaved (issue 15).

Variants, each exported from the same checkpoint by the real export code and run by ONNX Runtime's CPU
provider (1 intra-op thread, spinning off: the node's defaults):
- `graph`: Transpose, Cast, Sub, Mul, then the network (the graph before the fold);
- `scale`: Transpose, Cast, Sub, then the first conv with 1/std folded into its weights (exact: a centred
  image pads with zeros as before);
- `fold`: Transpose, Cast, the first conv with the normalisation folded in, plus the constant border map
  that makes it exact (engines/input_fold.py; the export default);
- `fold-no-border`: the same folded conv without the border map: cheaper by one Add, but wrong on the first
  conv's outer output ring, where zero padding now means "pixel value 0" instead of "the mean".
Label agreement with `graph` is counted on the development split's real frames. Timing: every
(width, variant) session in one interleaved loop per round (engines/bench.measure_grid); prints the
median over rounds of each p50 and of each variant's p50 ratio to `graph`, with the load average.
It also times the host's BGR->RGB conversion that a bgr8 graph would save (cv2.cvtColor).

    python scripts/bench_input_fold.py --ckpt models/slimseg_camvid_lite0 --data ../shared/data/camvid \\
        --rounds 5 --frames 40
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from torch import nn

from slimseg_ros.engines.bench import grid_rows, measure_grid
from slimseg_ros.engines.export import DEFAULT_HEIGHT, DEFAULT_WIDTH, export_graph
from slimseg_ros.engines.input_fold import RawInputConv
from slimseg_ros.engines.onnx_graph import DeployGraph
from slimseg_ros.engines.quantize import DEV_SPLIT, split_frames
from slimseg_ros.training.checkpoint import load_checkpoint

VARIANTS = ("graph", "scale", "fold", "fold-no-border")


def deploy_graph(subnet: nn.Module, meta: dict, variant: str) -> DeployGraph:
    """The DeployGraph of one variant (fold-no-border: the folded conv's border map dropped)."""
    graph = DeployGraph(subnet, meta["mean"], meta["std"], input_norm=variant.removesuffix("-no-border"))
    if variant == "fold-no-border":
        name, raw = next((n, m) for n, m in graph.subnet.named_modules() if isinstance(m, RawInputConv))
        parent, _, attr = name.rpartition(".")
        setattr(graph.subnet.get_submodule(parent), attr, raw.conv)
    return graph


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="models/slimseg_camvid_lite0")
    parser.add_argument("--data", default="../shared/data/camvid")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=40, help="timed frames per session per round")
    parser.add_argument("--widths", type=float, nargs="+", help="subset of the model's widths (default all)")
    args = parser.parse_args()
    size = (DEFAULT_HEIGHT, DEFAULT_WIDTH)
    model, meta = load_checkpoint(args.ckpt)
    widths = args.widths or [float(w) for w in model.cfg.widths]
    frames, _ = split_frames(args.data, DEV_SPLIT, size)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for w in widths:
            for v in VARIANTS:
                graph = deploy_graph(model.subnet(w), meta, v)
                path = export_graph(graph, Path(tmp) / f"{v}_{w}.onnx", *size)
                sessions[(w, v)] = session(path)
    print(f"{args.ckpt}, {size[0]}x{size[1]}, ONNX Runtime {ort.__version__} CPU, 1 thread, no spin; "
          f"{len(frames)} frames of {DEV_SPLIT}")
    for w in widths:
        ref = [sessions[(w, "graph")].run(None, {"image": f[None]})[0] for f in frames]
        for v in VARIANTS[1:]:
            same = sum(int((sessions[(w, v)].run(None, {"image": f[None]})[0] == r).sum())
                       for f, r in zip(frames, ref, strict=True))
            share = same / sum(r.size for r in ref)
            print(f"width {w:g} {v}: label agreement with graph {100 * share:.4f} %")
    runners = {key: (lambda f, s=s: s.run(None, {"image": f[None]})) for key, s in sessions.items()}
    p50 = {key: [] for key in sessions}
    for _ in range(args.rounds):
        rows = grid_rows(measure_grid(runners, frames, args.frames, warmup=3))
        for key in sessions:
            p50[key].append(rows[key]["p50_ms"])
    print(f"load average after timing: {os.getloadavg()[0]:.2f}; median over {args.rounds} rounds")
    print("| width | " + " | ".join(f"{v} p50 ms" for v in VARIANTS) + " | "
          + " | ".join(f"{v} / graph" for v in VARIANTS[1:]) + " |")
    print("|---|" + "---|" * (2 * len(VARIANTS) - 1))
    for w in widths:
        cells = [f"{np.median(p50[(w, v)]):.2f}" for v in VARIANTS]
        ratios = [f"{np.median(np.divide(p50[(w, v)], p50[(w, 'graph')])):.3f}" for v in VARIANTS[1:]]
        print(f"| {w:g} | " + " | ".join(cells + ratios) + " |")
    for h, wd in ((360, 480), (1080, 1920)):
        bgr = np.ascontiguousarray(cv2.resize(frames[0], (wd, h)))
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            times.append(1e3 * (time.perf_counter() - t0))
        print(f"host cv2.cvtColor BGR2RGB at {wd}x{h}: p50 {np.median(times):.3f} ms")


if __name__ == "__main__":
    main()
