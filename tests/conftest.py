"""Shared test fixtures: small models and inputs (2 shared CPU cores: keep everything tiny)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SLIMSEG_DATA", REPO.parent / "shared" / "data" / "camvid"))


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
    if not (DATA / "train").is_dir():
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA to its folder)")
    return DATA


@pytest.fixture(scope="module")
def frames() -> list:
    """Three consecutive CamVid val frames, RGB 480x360: what the node-process tests send."""
    cv2 = pytest.importorskip("cv2")
    paths = sorted((DATA / "val").glob("*"))[:3]
    if not paths:
        pytest.skip(f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """A real export of the test model at 96x128; without torch, the one SLIMSEG_TEST_EXPORT names."""
    from exported import runtime_export

    return runtime_export(tmp_path_factory.mktemp("node_manifest"), height=96, width=128)
