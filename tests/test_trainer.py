"""Training: every loss mode overfits a fixed batch, a few real steps run end to end, resume is exact."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from probe_terms import scalar_term  # noqa: E402

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.boundary import boundary_map  # noqa: E402
from slimseg_ros.training.checkpoint import load_checkpoint  # noqa: E402
from slimseg_ros.training.config import load_config  # noqa: E402
from slimseg_ros.training.context import TrainContext  # noqa: E402
from slimseg_ros.training.extras import ExtraProvider, register_extra  # noqa: E402
from slimseg_ros.training.steps import STEPS, SlimSegStep, register_step  # noqa: E402
from slimseg_ros.training.trainer import EpochSampler, Trainer, poly_lr  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "training" / "configs" / "smoke.yaml"
TINY = ["model.widths=[0.25,0.5]", "model.ppm_channels=16", "model.decoder_channels=32",
        "model.boundary_channels=16"]


def _synthetic_batch(n: int = 2, h: int = 48, w: int = 48) -> dict[str, torch.Tensor]:
    """Blocks of 4 classes whose colour encodes the class (learnable), one void stripe."""
    g = torch.Generator().manual_seed(0)
    label = torch.zeros(n, h, w, dtype=torch.long)
    label[:, : h // 2, w // 2:] = 1
    label[:, h // 2:, : w // 2] = 2
    label[:, h // 2:, w // 2:] = 3
    label[:, :, :3] = 11
    palette = torch.tensor([[1.0, -1, 0], [-1, 1, 0], [0, 0, 1], [1, 1, -1]])
    image = palette[label.clamp(max=3)].permute(0, 3, 1, 2) + 0.3 * torch.randn(n, 3, h, w, generator=g)
    return {"image": image, "label": label, "boundary": boundary_map(label, 11, 11)}


@pytest.mark.slow  # about 5 s per mode on a shared 2-core machine
@pytest.mark.parametrize("method", ["slimseg", "inplace", "no_boundary", "independent"])
def test_each_mode_overfits_a_fixed_batch(method: str) -> None:
    torch.manual_seed(0)
    cfg = load_config(None, [f"method={method}", *TINY])
    strategy = STEPS.get(method)(cfg)
    runner = strategy.build_runner()
    opt = torch.optim.AdamW(list(runner.parameters()) + list(strategy.loss.parameters()), lr=2e-2)
    batch = _synthetic_batch()
    losses = []
    for _ in range(16):
        loss, logs = strategy.compute(runner, batch, None, {})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert losses[-1] < 0.4 * losses[0], losses  # falls clearly (about 0.2x in practice)
    widths = {k.split("/")[0] for k in logs if "/" in k}
    assert widths == {"w0.25", "w0.5"}  # every width took part
    if method in ("slimseg",):
        assert "w0.5/boundary_bce" in logs and "w0.25/kd" in logs
    if method == "independent":
        assert not any("kd" in k for k in logs)


def test_teacher_rules() -> None:
    cfg = load_config(None, ["model.widths=[0.25,0.5,0.75,1.0]"])
    ws = [0.25, 0.5, 0.75, 1.0]
    assert [STEPS.get("slimseg")(cfg).teacher_of(w, ws) for w in ws] == [0.5, 0.75, 1.0, None]
    assert [STEPS.get("inplace")(cfg).teacher_of(w, ws) for w in ws] == [1.0, 1.0, 1.0, None]


def test_poly_lr_and_sampler() -> None:
    assert poly_lr(1.0, 0, 10, 0.9) == 1.0 and poly_lr(1.0, 10, 10, 0.9) == 0.0
    assert poly_lr(1.0, 0, 10, 0.9, warmup=2) == 0.5
    s = EpochSampler(10, 2, world_size=2, rank=1, seed=3)
    s.set_epoch(4)
    full = s.indices()
    assert len(full) == 4 and s.batches_per_epoch == 2
    s.set_epoch(4, skip_batches=1)
    assert list(iter(s)) == full[2:]
    other = EpochSampler(10, 2, world_size=2, rank=0, seed=3)
    other.set_epoch(4)
    assert not set(other.indices()) & set(full)  # ranks never share frames


def _run(camvid: Path, out: Path, overrides: list[str], resume: bool = False) -> Trainer:
    cfg = load_config(SMOKE, [*TINY, *overrides])
    trainer = Trainer(cfg, camvid, out, device="cpu", resume=resume, progress=False)
    trainer.run()
    return trainer


def test_real_frames_train_save_and_log(camvid_root: Path, tmp_path: Path) -> None:
    _run(camvid_root, tmp_path, ["train.steps=3", "train.val_every=2"])
    model, meta = load_checkpoint(tmp_path / "final")
    assert meta["step"] == 3 and meta["classes"][0] == "sky" and meta["ignore_index"] == 11
    assert meta["mean"] == [123.675, 116.28, 103.53] and meta["train"]["method"] == "slimseg"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val" in r and r["step"] == 2 for r in records)
    epochs = [r for r in records if isinstance(r.get("epoch"), int) and "loss" in r]
    assert epochs and all(r["loss"] > 0 for r in epochs)
    final = json.loads((tmp_path / "summary.json").read_text())["val"]
    assert set(final) == {"0.25", "0.5"} and 0 <= final["0.5"]["miou"] <= 1


def test_independent_saves_one_checkpoint_per_width(camvid_root: Path, tmp_path: Path) -> None:
    _run(camvid_root, tmp_path, ["method=independent", "train.steps=1", "data.val_split=null"])
    for w in ("0.25", "0.5"):
        model, meta = load_checkpoint(tmp_path / f"final_w{w}")
        assert model.cfg.widths == (float(w),)


def test_resume_continues_and_matches_uninterrupted(camvid_root: Path, tmp_path: Path) -> None:
    common = ["train.steps=4", "train.ckpt_every=2", "data.val_split=null"]
    full = _run(camvid_root, tmp_path / "full", common)
    # Interrupted run: stop after 2 steps (the state at step 2 is what a crash would leave), then resume.
    _run(camvid_root, tmp_path / "part", ["train.steps=4", "train.ckpt_every=2", "data.val_split=null",
                                          "train.stop_after=2"])
    resumed = _run(camvid_root, tmp_path / "part", common, resume=True)
    assert resumed.step == 4
    a = full.runner.state_dict()
    b = resumed.runner.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_resume_without_state_is_a_clear_error(camvid_root: Path, tmp_path: Path) -> None:
    cfg = load_config(SMOKE, TINY)
    with pytest.raises(SlimsegError, match="does not exist"):
        Trainer(copy.deepcopy(cfg), camvid_root, tmp_path, device="cpu", resume=True, progress=False)


def test_bad_config_values_are_clear_errors() -> None:
    with pytest.raises(SlimsegError, match="unknown method"):
        load_config(None, ["method=magic"])
    with pytest.raises(SlimsegError, match="unknown config section"):
        load_config(None, ["trian.steps=3"])


# ---- extension points: an extras provider, a trainable loss term and a step strategy from outside ----------

@register_extra("test_probe")
class _ProbeExtra(ExtraProvider):
    """Adds a trainable scalar and passes the batch mean to the loss context."""

    def __init__(self, init: float = 1.0) -> None:
        self.scale = torch.nn.Parameter(torch.tensor(float(init)))
        self.prepared_on = None

    def prepare(self, ctx: TrainContext) -> None:
        self.prepared_on = ctx.device

    def compute(self, images: torch.Tensor, batch: dict) -> dict:
        return {"probe_mean": images.mean(), "probe_scale": self.scale}

    def parameters(self):
        return iter([self.scale])


# Uses the provider's output and owns a trainable per-term parameter.
scalar_term("test_probe_term", 0.5, lambda bias, ctx: (ctx.extra["probe_scale"] - 2.0) ** 2 + bias**2
            + 0 * ctx.student["logits"].sum())


@register_step("test_semi")
class _SemiStep(SlimSegStep):
    """Checks the unlabelled stream reaches a registered strategy, then does a normal SlimSeg step."""

    seen_unlabeled = 0

    def compute(self, runner, batch, unlabeled, extra):
        assert unlabeled is not None and unlabeled["image"].shape[0] == 3
        type(self).seen_unlabeled += 1
        return super().compute(runner, batch, unlabeled, extra)


def test_extension_points_train_their_parameters(camvid_root: Path, tmp_path: Path) -> None:
    terms = "[{name: ce}, {name: test_probe_term, weight: 1.0, apply_to: widest}]"
    unl = f"{{folders: [{camvid_root / 'val'}], batch_size: 3}}"
    trainer = _run(camvid_root, tmp_path, ["method=test_semi", f"loss.terms={terms}",
                                           "extras=[{name: test_probe}]", f"data.unlabeled={unl}",
                                           "train.steps=2", "data.val_split=null"])
    probe = trainer.extras[0]
    assert probe.prepared_on == torch.device("cpu")
    assert float(probe.scale.detach()) > 1.0  # pulled towards 2 by the optimizer
    assert float(trainer.loss.terms[1].param.detach()) < 0.5  # loss-term parameters are trained too
    assert _SemiStep.seen_unlabeled == 2
