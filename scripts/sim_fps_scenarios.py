#!/usr/bin/env python3
"""The fps policy on the measured ladders, before and after: the table in docs/policy.md.

Runs every scenario of slimseg_ros/sim_scenarios.py for a few seeds with the current fps policy and with the
one at git revision --before (its slimseg_ros/policies/fps.py, loaded from git into this tree: same
simulator, same seeds), and prints a markdown table of the figures that judge a run.

  python scripts/sim_fps_scenarios.py --before e88026c --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slimseg_ros import sim_scenarios as S  # noqa: E402
from slimseg_ros.policies.fps import FpsPolicy  # noqa: E402
from slimseg_ros.policy_params import FpsParams  # noqa: E402

BEFORE = "e88026c"  # the last commit with the window-median, ratio-only fps policy (issue 15)


def policy_class_at(revision: str) -> type:
    """FpsPolicy as it was at a git revision (its module imports today's base and parameter table)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:slimseg_ros/policies/fps.py"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fps_{revision}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"fps_{revision}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.FpsPolicy


def rows(policies: dict[str, type], seeds: list[int]) -> list[str]:
    """One markdown row per scenario and policy: medians over seeds (worst case for switches and wrong)."""
    alpha = FpsParams().ewma_alpha
    out = []
    for sc in S.SCENARIOS:
        for label, cls in policies.items():
            verdicts = [S.run(sc, S.policy_for(sc, cls), seed, alpha)[1] for seed in seeds]
            out.append(
                f"| {sc.name} | {label} | {sc.widest_fitting(alpha):g} "
                f"| {median(v.held_widest for v in verdicts):.1%} "
                f"| {max(v.switches_per_min for v in verdicts):.2f} "
                f"| {max(v.longest_wrong_s for v in verdicts):.1f} "
                f"| {median(v.steady_fps for v in verdicts):.1f} |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before", default=BEFORE, help=f"git revision of the 'before' policy (default {BEFORE})"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = {f"before ({args.before})": policy_class_at(args.before), "after": FpsPolicy}
    print(
        "| scenario | policy | widest held-fitting width | steady time at it (median) "
        "| steady switches/min (max) | longest stay at a width over budget after a step up, s (max) "
        "| steady fps (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows(policies, seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
