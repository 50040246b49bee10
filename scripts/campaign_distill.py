#!/usr/bin/env python3
"""Knowledge Adaptation and MGD measured on the dev split (CPU scale): train every arm, evaluate, tabulate.

Two lanes, each a chain whose later arms load the earlier ones' checkpoints (paths in the dev_*.yaml configs,
relative to the repository, under runs/distill/):
  ka   ka_teacher (SlimSeg Lite0, 600 steps) -> ka_autoencoder -> slimseg_ka_s0, slimseg_ka_s1 (300 steps
       each, compared with the SlimSeg arms of scripts/campaign_dev.py: same config, steps and seeds)
  mgd  under 1of8/ (the label fraction): mgd_teacher_deep (Lite2), mgd_teacher_wide (Lite1, wide head) ->
       sup_s0/s1 and mgd_s0/s1 (200 steps of 4 labelled frames; MGD adds 8 withheld frames a step)
A finished arm is skipped and an interrupted one resumed, so the script is re-run after any stop.

    python scripts/campaign_distill.py --lane ka &     # one torch thread each (train.threads: 1)
    python scripts/campaign_distill.py --lane mgd &
    python scripts/campaign_distill.py --report --baseline docs/run_logs/dev_campaign

Other label fractions: --fraction 1/4 (runs under runs/distill/1of4/, teachers trained on that partition).
GPU, full resolution: add --full-res.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slimseg_ros.training.campaign import cell as fmt
from slimseg_ros.training.campaign import evaluate, mean_spread, scores, train, wall_minutes

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training/configs"
FULL_RES = ["data.crop=[352,352]", "data.scale=[0.75,1.75]", "data.eval_size=null", "train.batch_size=16",
            "train.amp=bf16", "train.threads=null"]
# arm -> (config, seed). Lanes run their arms in this order (later arms need the earlier checkpoints).
LANES: dict[str, dict[str, tuple[str, int]]] = {
    "ka": {
        "ka_teacher": ("dev_ka_teacher", 0),
        "ka_autoencoder": ("dev_ka_autoencoder", 0),
        "slimseg_ka_s0": ("dev_slimseg_ka", 0),
        "slimseg_ka_s1": ("dev_slimseg_ka", 1),
        "slimseg_ka_beta5_s0": ("dev_slimseg_ka_beta5", 0),  # the fix tried after KA lost (docs/results.md)
    },
    "mgd": {
        "mgd_teacher_deep": ("dev_mgd_teacher_deep", 0),
        "mgd_teacher_wide": ("dev_mgd_teacher_wide", 0),
        "sup_s0": ("dev_slimseg_sup_1of8", 0),
        "mgd_s0": ("dev_slimseg_mgd_1of8", 0),
        "sup_s1": ("dev_slimseg_sup_1of8", 1),
        "mgd_s1": ("dev_slimseg_mgd_1of8", 1),
    },
}
NOT_EVALUATED = {"ka_autoencoder"}  # its `final` checkpoint is the unchanged teacher


def lane_folder(out_root: Path, lane: str, fraction: str) -> Path:
    """KA arms directly under the campaign folder; MGD arms under their label fraction (1of8/, 1of4/)."""
    return out_root / ("1of" + fraction.split("/")[1]) if lane == "mgd" else out_root


def run_lane(lane: str, out_root: Path, data: str, extra: list[str], fraction: str) -> None:
    """Train and evaluate the lane's arms in order. The partition seed stays 0 for every arm (the same
    labelled frames); the arm's seed changes initialisation of the head, batches and augmentation."""
    folder = lane_folder(out_root, lane, fraction)
    for name, (config, seed) in LANES[lane].items():
        run = folder / name
        sets = [f"train.seed={seed}", *extra]
        if lane == "mgd":
            teachers = f"{{wide: {folder}/mgd_teacher_wide/final, deep: {folder}/mgd_teacher_deep/final}}"
            sets.append(f"data.partition.fraction={fraction}")
            if config == "dev_slimseg_mgd_1of8":
                sets.append(f"extras=[{{name: mgd, teachers: {teachers}}}]")
        train(ROOT, CONFIGS / f"{config}.yaml", run, data, sets)
        if name not in NOT_EVALUATED:
            evaluate(ROOT, run, data)


def _pair_table(title: str, base: list[Path], arm: list[Path], names: tuple[str, str]) -> list[str]:
    """Per width: both arms' dev mIoU and boundary mIoU (mean ± half-range), the gain and the seed spread."""
    if not base or not arm:
        return [f"{title}: waiting for runs ({len(base)} baseline, {len(arm)} arm)"]
    b, a = scores(base, "dev"), scores(arm, "dev")
    bb, ab = scores(base, "dev", "boundary_miou"), scores(arm, "dev", "boundary_miou")
    bv, av = scores(base, "val"), scores(arm, "val")
    lines = [f"**{title}** ({len(base)} + {len(arm)} seeds; wall {wall_minutes(base):.0f} + "
             f"{wall_minutes(arm):.0f} min)", "",
             f"| width | {names[0]} dev mIoU | {names[1]} dev mIoU | gain | seed spread | "
             f"{names[0]} dev bIoU | {names[1]} dev bIoU | val gain |", "|---|---|---|---|---|---|---|---|"]
    for w in b:
        (bm, bs), (am, as_) = mean_spread(b[w]), mean_spread(a[w])
        vgain = mean_spread(av[w])[0] - mean_spread(bv[w])[0]
        lines.append(f"| {float(w):g} | {fmt(b[w])} | {fmt(a[w])} | {am - bm:+.1f} | {max(bs, as_):.1f} | "
                     f"{fmt(bb[w])} | {fmt(ab[w])} | {vgain:+.1f} |")
    return lines


def report(out_root: Path, baseline: Path, fraction: str) -> str:
    """Markdown: the teachers' own scores, then KA vs SlimSeg and MGD vs supervised-only per width."""
    done = {n: lane_folder(out_root, lane, fraction) / n for lane, arms in LANES.items() for n in arms}
    done = {n: p for n, p in done.items() if (p / "eval_dev.json").exists()}
    lines = ["| teacher | widths | dev mIoU (widest) | dev bIoU | val mIoU | train wall min |",
             "|---|---|---|---|---|---|"]
    for name in ("ka_teacher", "mgd_teacher_deep", "mgd_teacher_wide"):
        if name in done:
            dev, bnd, val = (scores([done[name]], t, k) for t, k in
                             (("dev", "miou"), ("dev", "boundary_miou"), ("val", "miou")))
            w = max(dev, key=float)
            lines.append(f"| {name} | {', '.join(f'{float(x):g}' for x in dev)} | {dev[w][0]:.1f} | "
                         f"{bnd[w][0]:.1f} | {val[w][0]:.1f} | {wall_minutes([done[name]]):.0f} |")
    base_ka = sorted(p for p in baseline.glob("slimseg_s[0-9]") if (p / "eval_dev.json").exists())
    lines += ["", *_pair_table("KA, full labels: SlimSeg vs SlimSeg + KA", base_ka,
                               [done[n] for n in ("slimseg_ka_s0", "slimseg_ka_s1") if n in done],
                               ("slimseg", "+KA"))]
    lines += ["", *_pair_table("KA with beta = 5 (adaptation weight / 10)", base_ka,
                               [done[n] for n in ("slimseg_ka_beta5_s0",) if n in done],
                               ("slimseg", "+KA b5"))]
    lines += ["", *_pair_table(f"MGD, {fraction} labels: supervised-only SlimSeg vs SlimSeg + MGD",
                               [done[n] for n in ("sup_s0", "sup_s1") if n in done],
                               [done[n] for n in ("mgd_s0", "mgd_s1") if n in done],
                               ("supervised", "+MGD"))]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/camvid"))
    ap.add_argument("--out", default=str(ROOT / "runs/distill"), help="campaign folder (configs expect this)")
    ap.add_argument("--lane", choices=sorted(LANES), help="which chain of arms to run")
    ap.add_argument("--fraction", default="1/8", help="label fraction of the mgd lane")
    ap.add_argument("--full-res", action="store_true", help="GPU: full resolution, batch 16, bf16")
    ap.add_argument("--set", action="append", default=[], help="extra key=value override for every arm")
    ap.add_argument("--report", action="store_true", help="print the tables of finished arms and exit")
    ap.add_argument("--baseline", default=str(ROOT / "runs/dev"),
                    help="campaign_dev.py output holding slimseg_s0, slimseg_s1 (KA's baseline)")
    args = ap.parse_args()
    out_root = Path(args.out)
    if args.report:
        print(report(out_root, Path(args.baseline), args.fraction))
        return
    if args.lane is None:
        ap.error("give --lane or --report")
    run_lane(args.lane, out_root, args.data, (FULL_RES if args.full_res else []) + args.set, args.fraction)


if __name__ == "__main__":
    main()
