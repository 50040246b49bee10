"""Which INT8 choices move label agreement: each width quantised under variants, judged as --int8 auto.

`slimseg export --int8 auto` keeps INT8 only where labels agree with fp32 on >= 99 % of dev pixels. On the
shipped Lite0 weights no width reached that (docs/bench.md). This script asks why: is it the calibration
range (min/max against a percentile), or the depthwise convs (kept fp32)? It prints, per variant and width,
the agreement and mIoU delta on the dev split and the INT8/fp32 p50 ratio (1 thread, on one frame,
interleaved by engines/bench.measure_grid).

    python scripts/int8_sensitivity.py --manifest /tmp/i8/lite0_480/manifest.yaml \
        --data ../shared/data/camvid --dev-frames 24
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from slimseg_ros.engines import quantize as Q
from slimseg_ros.engines.bench import measure_grid
from slimseg_ros.manifest import Manifest

# variant -> quantize_graph keywords
VARIANTS = {
    "minmax": {},
    "percentile": {"calibration": "percentile"},
    "minmax+depthwise-fp32": {"depthwise_fp32": True},
}


class _Session:
    """The `.infer(image, width)` face `quantize.accuracy` expects, over one width's ONNX file."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def infer(self, image: np.ndarray, _width: float = 0.0) -> np.ndarray:
        return self.session.run(None, {self.name: image[None]})[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, type=Path, help="an fp32 export (slimseg export)")
    parser.add_argument("--data", required=True, help="the CamVid folder")
    parser.add_argument("--dev-frames", type=int, default=24, help="dev frames judged (evenly spread)")
    parser.add_argument("--split", default=Q.DEV_SPLIT,
                        help=f"split judged (default {Q.DEV_SPLIT}, the dusk sequence; e.g. test:0001TP)")
    parser.add_argument("--rounds", type=int, default=15, help="timed runs of each graph")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    manifest = Manifest.load(args.manifest)
    calib = Q.calibration_frames(args.data, manifest.input_size)
    images, targets = Q.split_frames(args.data, args.split, manifest.input_size, args.dev_frames)
    print(f"calibration: {Q.CALIBRATION_SPLIT}, {len(calib)} frames; judged on {len(images)} {args.split} "
          "frames; onnxruntime CPU, 1 thread")
    print("| variant | width | agreement % | mIoU delta (points) | int8 / fp32 p50 |")
    print("|---|---|---|---|---|")
    fp32 = {w: _Session(manifest.verify(w)) for w in manifest.widths}
    for variant in args.variants.split(","):
        for w in manifest.widths:
            with tempfile.TemporaryDirectory() as tmp:
                int8_path = Q.quantize_graph(manifest.verify(w), Path(tmp) / "int8.onnx", calib,
                                             **VARIANTS[variant])
                int8 = _Session(int8_path)
                acc = Q.accuracy(fp32[w], int8, [w], images, targets, manifest.num_classes,
                                 manifest.ignore_index)[w]
                runners = {"fp32": fp32[w].infer, "int8": int8.infer}
                wall = measure_grid(runners, images[:1], args.rounds, warmup=1)
            ratio = statistics.median(wall["int8"]["wall"]) / statistics.median(wall["fp32"]["wall"])
            print(f"| {variant} | {w:g} | {100 * acc['agreement']:.2f} | {100 * acc['miou_delta']:+.2f} "
                  f"| {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
