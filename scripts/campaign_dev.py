#!/usr/bin/env python3
"""The equal-budget comparison on the sequence-held-out dev split: train every arm, evaluate, tabulate.

Every arm uses training/configs/camvid_dev_lite0.yaml and the same steps and batch; an arm differs only in
its method, seed or initialisation (the ARMS table). The script resumes where it stopped: a finished arm
(final checkpoint + both eval JSONs) is skipped, an interrupted one continues with --resume. Run several
lanes in parallel on a multi-core box (`--lane 0 --lanes 2` and `--lane 1 --lanes 2`), then `--report`.

    python scripts/campaign_dev.py --lane 0 --lanes 2 &    # one torch thread each
    python scripts/campaign_dev.py --lane 1 --lanes 2 &
    python scripts/campaign_dev.py --report                 # markdown table of every finished arm

GPU (full resolution, same protocol): add --full-res.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slimseg_ros.training.campaign import (
    EVAL_SPLITS,
    evaluate,
    mean_spread,
    scores,
    train,
    wall_minutes,
)
from slimseg_ros.training.campaign import cell as fmt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training/configs/camvid_dev_lite0.yaml"
FULL_RES = ["data.crop=[352,352]", "data.scale=[0.75,1.75]", "data.eval_size=null", "train.batch_size=16",
            "train.amp=bf16", "train.threads=null"]
# name -> (method, seed, extra overrides). Order is priority: lanes take arms round-robin in this order.
ARMS: dict[str, tuple[str, int, list[str]]] = {
    "slimseg_s0": ("slimseg", 0, []),
    "independent_s0": ("independent", 0, []),
    "slimseg_s1": ("slimseg", 1, []),
    "independent_s1": ("independent", 1, []),
    "slimseg_scratch_s0": ("slimseg", 0, ["model.pretrained=null"]),
    "inplace_s0": ("inplace", 0, []),
    "no_boundary_s0": ("no_boundary", 0, []),
}


def run_arm(name: str, out_root: Path, data: str, steps: int, extra: list[str]) -> None:
    method, seed, overrides = ARMS[name]
    run = out_root / name
    train(ROOT, CONFIG, run, data, [f"method={method}", f"train.seed={seed}", f"train.steps={steps}",
                                    *overrides, *extra])
    evaluate(ROOT, run, data)


def report(out_root: Path) -> str:
    """Markdown: per width and arm group, mIoU and boundary mIoU on dev and val, mean +- half-range."""
    groups: dict[str, list[Path]] = {}
    for name in ARMS:
        run = out_root / name
        if (run / "eval_dev.json").exists():
            groups.setdefault(name.rsplit("_s", 1)[0], []).append(run)
    lines = ["| arm | seeds | width | dev mIoU | dev boundary mIoU | val mIoU | wall min (sum of seeds) |",
             "|---|---|---|---|---|---|---|"]
    for group, runs in groups.items():
        dev, bnd, val = scores(runs, "dev"), scores(runs, "dev", "boundary_miou"), scores(runs, "val")
        for w in dev:
            lines.append(f"| {group} | {len(runs)} | {float(w):g} | {fmt(dev[w])} | {fmt(bnd[w])} | "
                         f"{fmt(val[w])} | {wall_minutes(runs):.0f} |")
    if {"slimseg", "independent"} <= set(groups):
        lines += ["", "| width | slimseg - independent, dev mIoU | spread (largest half-range) | val mIoU |",
                  "|---|---|---|---|"]
        ev = {g: {t: scores(groups[g], t) for t in EVAL_SPLITS} for g in ("slimseg", "independent")}
        for w in ev["slimseg"]["dev"]:
            (sd, ss) = mean_spread(ev["slimseg"]["dev"][w])
            (idd, iss) = mean_spread(ev["independent"]["dev"][w])
            sv, iv = mean_spread(ev["slimseg"]["val"][w])[0], mean_spread(ev["independent"]["val"][w])[0]
            lines.append(f"| {float(w):g} | {sd - idd:+.1f} | {max(ss, iss):.1f} | {sv - iv:+.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/camvid"))
    ap.add_argument("--out", default=str(ROOT / "runs/dev"), help="one folder per arm under here")
    ap.add_argument("--steps", type=int, default=400, help="the same optimizer steps for every arm")
    ap.add_argument("--lane", type=int, default=0)
    ap.add_argument("--lanes", type=int, default=1)
    ap.add_argument("--arms", nargs="*", default=None, help="subset of: " + ", ".join(ARMS))
    ap.add_argument("--full-res", action="store_true", help="GPU: full resolution, batch 16, bf16")
    ap.add_argument("--set", action="append", default=[], help="extra key=value override for every arm")
    ap.add_argument("--report", action="store_true", help="print the table of finished arms and exit")
    args = ap.parse_args()
    out_root = Path(args.out)
    if args.report:
        print(report(out_root))
        return
    names = args.arms or list(ARMS)
    unknown = sorted(set(names) - set(ARMS))
    if unknown:
        ap.error(f"unknown arms {unknown}; known: {', '.join(ARMS)}")
    extra = (FULL_RES if args.full_res else []) + args.set
    for name in names[args.lane::args.lanes]:
        run_arm(name, out_root, args.data, args.steps, extra)


if __name__ == "__main__":
    main()
