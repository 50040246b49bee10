"""Campaign plumbing shared by the comparison scripts: train an arm unless it is finished, resume it if it
was interrupted, evaluate it on the dev and val splits, and summarise several seeds of a width's score.

An arm is finished when its final checkpoint(s) exist; an evaluation when its JSON exists. So a campaign
script can be re-run after any interruption (a session ending, a crash) and does only what is left.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEV_SPLIT = "train:0001TP"  # the sequence-held-out frames (training/configs/camvid_dev_lite0.yaml val_split)
EVAL_SPLITS = {"dev": DEV_SPLIT, "val": "val"}


def ckpts(run: Path) -> list[Path]:
    """The final checkpoint(s) of a run: one shared model, or one per width (independent), ascending."""
    per_width = sorted(run.glob("final_w*.json"), key=lambda p: float(p.stem.split("_w")[1]))
    return per_width or ([run / "final.json"] if (run / "final.json").exists() else [])


def slimseg(root: Path, *args: str) -> None:
    """Run one `slimseg` subcommand with this interpreter (the campaign's venv), echoing the command."""
    cmd = [sys.executable, "-m", "slimseg_ros.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=root)


def train(root: Path, config: Path, run: Path, data: str, sets: list[str]) -> None:
    """Train `run` from `config` with `--set` overrides, unless finished; resume if a state exists."""
    if ckpts(run):
        return
    t0 = time.time()
    resume = ["--resume"] if (run / "train_state.json").exists() else []
    slimseg(root, "train", "--config", str(config), "--data", data, "--out", str(run), *resume,
            *[a for s in sets for a in ("--set", s)])
    (run / "campaign_wall_s.txt").write_text(f"{time.time() - t0:.0f}\n")


def evaluate(root: Path, run: Path, data: str) -> None:
    """eval_dev.json and eval_val.json of a finished run (every width), unless they exist."""
    for tag, split in EVAL_SPLITS.items():
        out = run / f"eval_{tag}.json"
        if not out.exists():
            args = [a for c in ckpts(run) for a in ("--ckpt", str(c.with_suffix("")))]
            slimseg(root, "eval", *args, "--data", data, "--split", split, "--device", "cpu",
                    "--out", str(out))


def scores(runs: list[Path], tag: str, key: str = "miou") -> dict[str, list[float]]:
    """{width: [score of each run in %]} from the runs' eval_<tag>.json (widths every run has)."""
    evals = [json.loads((r / f"eval_{tag}.json").read_text())["widths"] for r in runs]
    widths = sorted(set.intersection(*(set(e) for e in evals)), key=float) if evals else []
    return {w: [100 * e[w][key] for e in evals] for w in widths}


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and half-range (the seed spread the tables quote)."""
    return statistics.mean(values), (max(values) - min(values)) / 2


def cell(values: list[float]) -> str:
    """'m' for one seed, 'm ± half-range' for several."""
    m, s = mean_spread(values)
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {s:.1f}"


def wall_minutes(runs: list[Path]) -> float:
    """Training wall time of the runs together (summary.json), in minutes."""
    return sum(json.loads((r / "summary.json").read_text()).get("wall_s", 0) for r in runs) / 60
