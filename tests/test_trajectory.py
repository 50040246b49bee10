"""Refactor guard: seeded 4-step runs of the SlimSeg, KA and MGD arms log what they logged when recorded.

trajectory_golden.json was written by `cd tests && python trajectory.py > trajectory_golden.json` on the
trainer before its plug-ins took a context and its config became typed (issue 14, section 5); a change of
the trainer's inner shape must leave every logged loss part and the final weights as they were. Record it
again only for a deliberate change of what training computes, and say so in the commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from trajectory import trajectory  # noqa: E402

GOLDEN = json.loads((Path(__file__).parent / "trajectory_golden.json").read_text())


@pytest.mark.parametrize("arm", sorted(GOLDEN))
def test_training_trajectory_is_unchanged(arm: str, camvid_root: Path, tmp_path: Path) -> None:
    got, want = trajectory(arm, tmp_path, camvid_root), GOLDEN[arm]
    assert [sorted(e) for e in got["epochs"]] == [sorted(e) for e in want["epochs"]]
    for g, w in zip(got["epochs"], want["epochs"], strict=True):
        for key, value in w.items():
            assert math.isclose(g[key], value, rel_tol=1e-5, abs_tol=1e-7), (arm, w["epoch"], key)
    assert math.isclose(got["weights_abs_sum"], want["weights_abs_sum"], rel_tol=1e-6)
