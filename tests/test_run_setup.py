"""How a run is set up from its config: a base config, a checkpoint to start from, a label fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.checkpoint import load_checkpoint  # noqa: E402
from slimseg_ros.training.config import load_config  # noqa: E402
from slimseg_ros.training.partition import make_partition  # noqa: E402
from slimseg_ros.training.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "training" / "configs" / "smoke.yaml"
TINY = ["model.widths=[0.25,0.5]", "model.ppm_channels=16", "model.decoder_channels=32",
        "model.boundary_channels=16", "data.val_split=null"]


def _trainer(camvid: Path, out: Path, overrides: list[str]) -> Trainer:
    return Trainer(load_config(SMOKE, [*TINY, *overrides]), camvid, out, device="cpu", progress=False)


def test_config_base_is_merged_under_the_file(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("method: inplace\ntrain: {steps: 7, batch_size: 3}\n")
    (tmp_path / "arm.yaml").write_text("base: base.yaml\ntrain: {steps: 9}\n")
    cfg = load_config(tmp_path / "arm.yaml")
    assert cfg.method == "inplace" and cfg.train.steps == 9 and cfg.train.batch_size == 3
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(SlimsegError, match="its own base"):
        load_config(tmp_path / "loop.yaml")


def test_every_dev_arm_config_loads() -> None:
    arms = sorted((REPO / "training" / "configs").glob("dev_*.yaml"))
    assert arms, "the CPU distillation campaign's configs are missing"
    for path in arms:
        cfg = load_config(path)
        assert cfg.data.val_split == "train:0001TP", path  # every arm scores on the held-out sequence
        assert cfg.model.pretrained == "imagenet", path


def test_init_copies_a_checkpoint_and_refuses_another_network(camvid_root: Path, tmp_path: Path) -> None:
    first = _trainer(camvid_root, tmp_path / "a", ["train.steps=2"])
    first.run()
    trained, _ = load_checkpoint(tmp_path / "a" / "final")
    second = _trainer(camvid_root, tmp_path / "b", [f"train.init={tmp_path / 'a' / 'final'}", "train.seed=5"])
    got = second.runner.unique_nets()[0][1].state_dict()
    for k, v in trained.state_dict().items():
        assert torch.equal(got[k], v), k  # weights and every width's BN statistics
    fresh = _trainer(camvid_root, tmp_path / "c", ["train.seed=5"]).runner.unique_nets()[0][1].state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in trained.state_dict().items())
    with pytest.raises(SlimsegError, match="different network.*decoder_channels"):
        _trainer(camvid_root, tmp_path / "d", [f"train.init={tmp_path / 'a' / 'final'}",
                                                "model.decoder_channels=48"])


def test_label_fraction_by_parameter_keeps_a_seeded_share(camvid_root: Path, tmp_path: Path) -> None:
    overrides = ["data.limit=16", "data.partition.fraction=1/4", "data.partition.seed=3",
                 "data.unlabeled.batch_size=2"]
    trainer = _trainer(camvid_root, tmp_path, overrides)
    everything = _trainer(camvid_root, tmp_path / "all", ["data.limit=16"]).train_set.pairs
    expected = make_partition([img.stem for img, _ in everything], "1/4", 3)
    assert sorted(img.stem for img, _ in trainer.train_set.pairs) == list(expected.labeled)
    unlabeled = trainer.unlabeled_loader.dataset.files
    assert sorted(p.stem for p in unlabeled) == list(expected.unlabeled)  # withheld frames feed the stream
    saved = json.loads((tmp_path / "partition.json").read_text())
    assert saved["fraction"] == "1/4" and saved["num_labeled"] == 4 and saved["num_unlabeled"] == 12
    batch = next(trainer.unlabeled_batches())
    assert "label" not in batch and batch["image"].shape[0] == 2


def test_label_fraction_errors_are_clear() -> None:
    with pytest.raises(SlimsegError, match="not supported"):
        load_config(SMOKE, ["data.partition.fraction=1/3"])
    with pytest.raises(SlimsegError, match="data.partition must set fraction"):
        load_config(SMOKE, ["data.partition.seed=1"])
