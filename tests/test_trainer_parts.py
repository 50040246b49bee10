"""The trainer's pieces, each alone: one step, the log, the checkpoint schedule and state, validation, and
the TrainContext plug-ins get instead of the trainer."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.config import load_config  # noqa: E402
from slimseg_ros.training.context import TrainContext  # noqa: E402
from slimseg_ros.training.distributed import DistInfo  # noqa: E402
from slimseg_ros.training.steps import STEPS  # noqa: E402
from slimseg_ros.training.trainer import RunLog, Trainer, checkpoint_due, epoch_means  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "training" / "configs" / "smoke.yaml"
TINY = ["model.widths=[0.25,0.5]", "train.ckpt_every=0", "train.val_every=0", "data.val_limit=1"]


def _trainer(camvid: Path, out: Path, overrides: tuple[str, ...] = ()) -> Trainer:
    return Trainer(load_config(SMOKE, [*TINY, *overrides]), camvid, out, device="cpu", progress=False)


def test_checkpoint_schedule() -> None:
    assert [s for s in range(1, 11) if checkpoint_due(s, 3, 10)] == [3, 6, 9]
    assert not checkpoint_due(10, 5, 10)  # the end of the run saves anyway
    assert not any(checkpoint_due(s, every, 10) for s in range(1, 11) for every in (0, None))


def test_epoch_means_and_run_log(tmp_path: Path) -> None:
    means = epoch_means({"loss": 3.0, "w1/ce": 1.0}, 2, DistInfo())
    assert means == {"loss": 1.5, "w1/ce": 0.5}
    log = RunLog(tmp_path, is_main=True, tensorboard=False)
    log.write({"epoch": 0, "step": 2, **means})
    log.write({"step": 2, "epoch": 0, "val": None}, scalars=False)
    RunLog(tmp_path, is_main=False, tensorboard=False).write({"epoch": 9, "step": 9})  # others never write
    log.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records == [{"epoch": 0, "step": 2, "loss": 1.5, "w1/ce": 0.5},
                       {"step": 2, "epoch": 0, "val": None}]


def test_one_step_alone_moves_the_weights_at_the_scheduled_rate(camvid_root: Path, tmp_path: Path) -> None:
    trainer = _trainer(camvid_root, tmp_path, ("optim.warmup_steps=2",))
    before = {k: v.clone() for k, v in trainer.runner.state_dict().items()}
    batch, unlabeled = next(trainer.epoch_batches(0))
    logs = trainer.train_step(batch, unlabeled)
    assert trainer.step == 1 and logs["lr"] == pytest.approx(trainer.cfg.optim.lr / 2)  # warm-up: half
    assert logs["loss"] > 0 and {"w0.5/ce", "w0.25/kd"} <= set(logs)
    assert any(not torch.equal(v, before[k]) for k, v in trainer.runner.state_dict().items())


def test_checkpoint_state_alone_restores_the_run(camvid_root: Path, tmp_path: Path) -> None:
    trainer = _trainer(camvid_root, tmp_path)
    trainer.train_step(*next(trainer.epoch_batches(0)))
    trainer.save_state()
    again = _trainer(camvid_root, tmp_path)
    again.resume()
    assert again.step == 1
    for k, v in trainer.runner.state_dict().items():
        assert torch.equal(v, again.runner.state_dict()[k]), k
    assert again.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


def test_after_step_saves_and_validates_on_schedule(camvid_root: Path, tmp_path: Path) -> None:
    trainer = _trainer(camvid_root, tmp_path, ("train.ckpt_every=1", "train.val_every=1"))
    log = RunLog(tmp_path, is_main=True, tensorboard=False)
    trainer.train_step(*next(trainer.epoch_batches(0)))
    val = trainer.after_step(0, log)
    assert (tmp_path / "train_state.json").exists() and (tmp_path / "last.safetensors").exists()
    assert set(val) == {"0.25", "0.5"} and 0 <= val["0.5"]["miou"] <= 1  # validate, alone and on schedule
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["step"] == 1 and record["val"] == val


def test_plugins_get_a_context_not_the_trainer() -> None:
    """A context is built without a trainer; no training module but the drivers imports the trainer."""
    cfg = load_config(None, ["model.widths=[0.5,1.0]", "model.decoder_channels=32", "model.ppm_channels=16"])
    step = STEPS.get("slimseg")(cfg)
    ctx = TrainContext(config=cfg, device=torch.device("cpu"), runner=step.build_runner(), loss=step.loss,
                       amp_dtype=None, out_dir=Path("."), data_root=Path("."), dist=DistInfo())
    assert ctx.student().cfg.widths == (0.5, 1.0)
    independent = STEPS.get("independent")(cfg)
    with pytest.raises(SlimsegError, match="one shared slimmable student"):
        TrainContext(config=cfg, device=torch.device("cpu"), runner=independent.build_runner(),
                     loss=independent.loss, amp_dtype=None, out_dir=Path("."), data_root=Path("."),
                     dist=DistInfo()).student()
    drivers = {"trainer.py", "train.py", "step_cost.py"}  # the loop itself and the two commands that run it
    for path in (REPO / "training").rglob("*.py"):
        if path.name in drivers:
            continue
        imported = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
        assert "slimseg_ros.training.trainer" not in imported, path
