"""Shared test fixtures: small models and inputs (2 shared CPU cores: keep everything tiny)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """Torch defaults to every core (and spin-waits); the CI machine is shared, so use one thread."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    """The real CamVid folder (SLIMSEG_DATA or <repo>/../shared/data/camvid); skips when it is absent."""
    root = Path(os.environ.get("SLIMSEG_DATA", REPO.parent / "shared" / "data" / "camvid"))
    if not (root / "train").is_dir():
        pytest.skip(f"CamVid not found at {root} (set SLIMSEG_DATA to its folder)")
    return root
