"""DistributedDataParallel on CPU: 2 processes (gloo) train a few steps and stay identical."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

import torch.multiprocessing as mp  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.widths=[0.25,0.5]", "model.ppm_channels=16", "model.decoder_channels=32",
        "model.boundary_channels=16", "data.crop=[48,48]", "data.scale=[0.8,1.2]", "data.limit=null",
        "data.val_split=null", "train.steps=3", "train.batch_size=2", "train.ckpt_every=0", "train.threads=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_dataset(root: Path, n: int = 8) -> None:
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = np.zeros((48, 64), np.uint8)
        lab[:, 20 + i:] = 1 + i % 3
        img = (rng.integers(0, 255, (48, 64, 3)) // 2 + lab[..., None] * 40).astype(np.uint8)
        cv2.imwrite(str(root / "train" / f"f{i}.png"), img)
        cv2.imwrite(str(root / "trainannot" / f"f{i}.png"), lab)


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from slimseg_ros.training.config import load_config
    from slimseg_ros.training.distributed import cleanup, init_distributed
    from slimseg_ros.training.trainer import Trainer

    cfg = load_config(REPO / "training" / "configs" / "smoke.yaml", TINY)
    info = init_distributed("cpu")
    try:
        trainer = Trainer(cfg, root, out, dist_info=info, progress=False)
        init = {k: v.detach().clone() for k, v in trainer.runner.named_parameters()}
        trainer.run()
        params = {k: v.detach().contiguous() for k, v in trainer.runner.named_parameters()}
        save_file(params, str(Path(out) / f"rank{rank}.safetensors"))
        save_file(init, str(Path(out) / f"init{rank}.safetensors"))
    finally:
        cleanup(info)


@pytest.mark.slow
def test_two_gloo_replicas_stay_identical(tmp_path: Path) -> None:
    _make_dataset(tmp_path / "data")
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "data"), str(out)), nprocs=2, join=True)
    a, b = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    init = load_file(str(out / "init0.safetensors"))
    assert set(a) == set(b) and a
    changed = 0
    for k in a:
        assert torch.equal(a[k], b[k]), f"replicas differ at {k}"
        changed += int(not torch.equal(a[k], init[k]))
    assert changed > len(a) // 2  # the replicas trained (most tensors moved), not just stayed at init
    assert (out / "final.safetensors").is_file()  # rank 0 wrote the checkpoint
