"""Knowledge Adaptation: autoencoder stage, adaptation and affinity terms, adapters, frozen teacher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.autoencoder import (  # noqa: E402
    FeatureAutoencoder,
    autoencoder_loss,
    freeze,
    load_autoencoder,
    save_autoencoder,
    train_autoencoder,
)
from slimseg_ros.training.losses import LossContext, WeightedLoss  # noqa: E402
from slimseg_ros.training.losses.ka import affinity_l2, cosine_affinity, normalized_l1, pool_to_bound  # noqa: E402

torch.set_num_threads(1)


def test_adaptation_distance_zero_iff_same_direction() -> None:
    a = torch.randn(2, 8, 5, 6)
    assert float(normalized_l1(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(normalized_l1(a, 3.0 * a)) == pytest.approx(0.0, abs=1e-5)  # per-location normalised
    assert float(normalized_l1(a, torch.randn(2, 8, 5, 6))) > 0.1


def test_affinity_zero_for_identical_and_positive_otherwise() -> None:
    a = torch.randn(2, 8, 5, 6)
    assert float(affinity_l2(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert float(affinity_l2(a, torch.randn(2, 16, 5, 6))) > 1e-3  # channel counts may differ
    aff = cosine_affinity(a)
    assert aff.shape == (2, 30, 30)
    assert torch.allclose(aff.diagonal(dim1=1, dim2=2), torch.ones(2, 30), atol=1e-5)


def test_affinity_memory_is_bounded_by_pooling() -> None:
    x = torch.randn(1, 4, 90, 120)
    assert pool_to_bound(x, 32).shape[-2:] == (32, 32)
    assert cosine_affinity(pool_to_bound(x, 32)).shape == (1, 1024, 1024)
    assert pool_to_bound(torch.randn(1, 4, 10, 12), 32).shape[-2:] == (10, 12)


def test_autoencoder_shapes_loss_falls_and_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ae = FeatureAutoencoder(in_channels=16, code_channels=8, hidden_channels=16, strides=(1, 2, 1))
    feat = torch.relu(torch.randn(4, 16, 9, 11))  # odd sizes: the decoder output is cropped back
    recon, code = ae(feat)
    assert recon.shape == feat.shape and code.shape == (4, 8, 5, 6) and ae.stride == 2
    losses = train_autoencoder(ae, lambda: feat, steps=60, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    ae.eval()
    path = save_autoencoder(ae, tmp_path / "ae", {"teacher": "x"})
    ae2, meta = load_autoencoder(path)
    ae2.eval()
    assert meta["teacher"] == "x"
    assert torch.allclose(ae.encode(feat), ae2.encode(feat), atol=1e-6)
    with pytest.raises(SlimsegError, match="not found"):
        load_autoencoder(tmp_path / "missing")
    with pytest.raises(SlimsegError, match="expects"):
        ae.encode(torch.randn(1, 3, 4, 4))


def test_autoencoder_loss_zero_for_perfect_reconstruction_and_zero_code() -> None:
    f = torch.randn(2, 4, 3, 3)
    assert float(autoencoder_loss(f, f, torch.zeros(2, 2, 2, 2))) == 0.0
    assert float(autoencoder_loss(f, f + 1, torch.zeros(2, 2, 2, 2))) > 0


def _ka_loss() -> WeightedLoss:
    common = {"code_channels": 8, "student_channels": 16, "widths": [0.5]}
    return WeightedLoss(
        [{"name": "ka_adapt", "weight": 50.0, **common}, {"name": "ka_affinity", "weight": 1.0, **common}]
    )


def test_gradients_reach_student_and_adapters_not_teacher_or_autoencoder() -> None:
    torch.manual_seed(0)
    teacher = freeze(torch.nn.Conv2d(3, 16, 3, padding=1))
    ae = freeze(FeatureAutoencoder(16, 8, 16, (1, 2, 1)))
    student = torch.nn.Conv2d(3, 8, 3, padding=1)  # width 0.5 of a 16-channel decoder
    loss = _ka_loss()
    x = torch.randn(2, 3, 12, 12)
    code = ae.encode(teacher(x))
    feat = student(x)
    ctx = LossContext(
        student={"logits": feat, "feat": feat},
        target=None,
        width=0.5,
        is_widest=False,
        extra={"ka_code": code},
    )
    total, parts = loss(ctx)
    assert set(parts) == {"ka_adapt", "ka_affinity"} and float(total.detach()) > 0
    total.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    for term in loss.terms:
        adapter = term.adapters["w0_5"]
        assert adapter.conv.weight.grad is not None and adapter.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in [*teacher.parameters(), *ae.parameters()])


def test_widest_width_is_skipped_and_missing_code_is_clear() -> None:
    loss = _ka_loss()
    feat = torch.randn(1, 16, 6, 6)
    widest = LossContext(student={"logits": feat, "feat": feat}, target=None, width=1.0, is_widest=True)
    total, parts = loss(widest)
    assert parts == {} and float(total) == 0.0
    narrow = LossContext(
        student={"logits": feat, "feat": feat[:, :8]}, target=None, width=0.5, is_widest=False
    )
    with pytest.raises(SlimsegError, match="extras"):
        loss(narrow)
    for width, student_feat, error in [(0.25, feat, "no KA adapter"),
                                       (0.5, torch.randn(1, 32, 6, 6), "student_channels")]:
        ctx = LossContext(student={"logits": feat, "feat": student_feat}, target=None, width=width,
                          is_widest=False, extra={"ka_code": torch.randn(1, 8, 3, 3)})
        with pytest.raises(SlimsegError, match=error):
            loss(ctx)


# ---- through the real trainer: autoencoder stage, then SlimSeg + KA, on a few CamVid frames ---------------
DATA = Path(os.environ.get("SLIMSEG_DATA", Path(__file__).resolve().parents[1].parent / "shared/data/camvid"))
CONFIGS = Path(__file__).resolve().parents[1] / "training/configs"
TINY_MODEL = {"widths": [0.25, 0.5, 1.0], "ppm_channels": 16, "decoder_channels": 32, "boundary_channels": 16}
TINY_DATA = {"crop": [64, 64], "scale": [0.2, 0.3], "num_workers": 0, "limit": 4, "val_split": None}
TINY_TRAIN = {"steps": 2, "batch_size": 2, "amp": "none", "ckpt_every": 0, "val_every": 0, "threads": 1}


def tiny(config: str) -> dict:
    """A shipped config shrunk to CPU-test size (same method, extras and loss terms)."""
    from slimseg_ros.training.config import load_config

    cfg = load_config(CONFIGS / config).to_dict()
    cfg["model"].update(TINY_MODEL)
    cfg["data"].update(TINY_DATA)
    cfg["train"].update(TINY_TRAIN)
    return cfg


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
def test_ka_autoencoder_stage_then_ka_training_through_trainer(tmp_path: Path) -> None:
    from slimseg_ros.training.checkpoint import save_checkpoint
    from slimseg_ros.training.model import ModelConfig, SlimSegNet
    from slimseg_ros.training.trainer import Trainer

    torch.manual_seed(0)
    teacher_cfg = ModelConfig.from_dict({"arch": "resnet18", **TINY_MODEL})
    save_checkpoint(tmp_path / "teacher", SlimSegNet(teacher_cfg), {"train": {}, "step": 0})

    cfg = tiny("ka_autoencoder.yaml")
    cfg["extras"][0].update(teacher=str(tmp_path / "teacher"), code_channels=16)
    Trainer(cfg, DATA, tmp_path / "ae", device="cpu", progress=False).run()
    ae, meta = load_autoencoder(tmp_path / "ae" / "ka_autoencoder")
    assert ae.in_channels == 32 and ae.code_channels == 16 and meta["teacher"].endswith("teacher")

    cfg = tiny("slimseg_ka.yaml")
    ae_path = str(tmp_path / "ae/ka_autoencoder")
    cfg["extras"][0].update(teacher=str(tmp_path / "teacher"), autoencoder=ae_path)
    for term in cfg["loss"]["terms"]:
        if term["name"].startswith("ka_"):
            term.update(code_channels=16, student_channels=32, widths=[0.25, 0.5])
    trainer = Trainer(cfg, DATA, tmp_path / "ka", device="cpu", progress=False)
    provider = trainer.extras[0]
    frozen = {k: v.clone() for k, v in provider.teacher.state_dict().items()}
    ae_before = {k: v.clone() for k, v in provider.ae.state_dict().items()}
    adapter = trainer.loss.terms[trainer.loss.names.index("ka_adapt")].adapters["w0_25"].conv.weight
    adapter_before = adapter.detach().clone()
    logs = trainer.train_step(next(iter(trainer.loader)), None)
    assert logs["w0.25/ka_adapt"] > 0 and logs["w0.5/ka_affinity"] > 0 and "w1/ka_adapt" not in logs
    assert not torch.equal(adapter.detach(), adapter_before)  # adapters are optimised with the model
    assert all(torch.equal(v, provider.teacher.state_dict()[k]) for k, v in frozen.items())  # incl. BN stats
    assert all(torch.equal(v, provider.ae.state_dict()[k]) for k, v in ae_before.items())


def test_step_cost_stand_ins_replace_missing_teacher_and_autoencoder(tmp_path: Path) -> None:
    """Sizing a KA run before its teacher exists: untrained stand-ins of the right shapes are written."""
    from slimseg_ros.training.checkpoint import load_checkpoint
    from slimseg_ros.training.config import load_config
    from slimseg_ros.training.step_cost import with_stand_ins

    cfg = load_config(CONFIGS / "slimseg_ka.yaml")
    out = with_stand_ins(cfg, tmp_path)
    spec = out.extras[0]
    net, _ = load_checkpoint(spec["teacher"])
    ae, _ = load_autoencoder(spec["autoencoder"])
    assert net.cfg.decoder_channels == ae.in_channels == 128 and ae.code_channels == 64
    assert cfg.extras[0]["teacher"] == "runs/slimseg/final"  # the input config is not modified


@pytest.mark.skipif(not DATA.is_dir(), reason=f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
def test_ka_terms_that_do_not_fit_the_autoencoder_fail_at_start(tmp_path: Path) -> None:
    from slimseg_ros.training.checkpoint import save_checkpoint
    from slimseg_ros.training.model import ModelConfig, SlimSegNet
    from slimseg_ros.training.trainer import Trainer

    teacher = SlimSegNet(ModelConfig.from_dict(TINY_MODEL))
    save_checkpoint(tmp_path / "teacher", teacher, {"train": {}, "step": 0})
    save_autoencoder(FeatureAutoencoder(32, 16), tmp_path / "ae")
    cfg = tiny("slimseg_ka.yaml")
    cfg["extras"][0].update(teacher=str(tmp_path / "teacher"), autoencoder=str(tmp_path / "ae"))
    for term in cfg["loss"]["terms"]:
        if term["name"].startswith("ka_"):
            term.update(code_channels=8, student_channels=32, widths=[0.25, 0.5])  # code is 16, not 8
    with pytest.raises(SlimsegError, match="autoencoder code 16 channels"):
        Trainer(cfg, DATA, tmp_path / "run", device="cpu", progress=False)
