"""Teachers from the pretrained EfficientNet-Lite families: built, saved, reloaded frozen, and a full
KA / MGD chain of the dev-split configs run end to end at toy size."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.training import pretrained  # noqa: E402
from slimseg_ros.training.checkpoint import save_checkpoint  # noqa: E402
from slimseg_ros.training.config import load_config  # noqa: E402
from slimseg_ros.training.model import ModelConfig, SlimSegNet  # noqa: E402
from slimseg_ros.training.teachers import load_teacher  # noqa: E402
from slimseg_ros.training.trainer import Trainer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
TOY = ["train.steps=1", "data.crop=[64,64]", "data.eval_size=[64,96]", "data.val_limit=2",
       "train.ckpt_every=1", "data.num_workers=0"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIMSEG_CACHE", str(tmp_path_factory.getbasetemp() / "slimseg_cache"))


@pytest.mark.parametrize("arch", ["efficientnet_lite1", "efficientnet_lite2"])
def test_pretrained_family_teacher_saves_and_reloads_frozen(arch: str, tmp_path: Path) -> None:
    pytest.importorskip(pretrained.WHEELS[arch].module, reason="make setup installs the weight wheels")
    cfg = ModelConfig(arch=arch, pretrained="imagenet", widths=(1.0,), ppm_channels=128, decoder_channels=256)
    net = SlimSegNet(cfg)
    pretrained.init_pretrained(net, arch, "imagenet")
    stem = pretrained.imagenet_state(arch)["_conv_stem.weight"]
    save_checkpoint(tmp_path / "teacher", net, {"classes": [str(i) for i in range(11)]})
    teacher = load_teacher(tmp_path / "teacher")
    ours = next(m for m in teacher.net.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(ours.weight, stem)  # the ImageNet stem survived the save / reload
    teacher.train()  # the trainer calls train() on everything; a teacher must stay in eval mode
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    out = teacher(torch.randn(1, 3, 64, 96))
    assert out["logits"].shape[1] == 11 and out["feat"].shape[1] == 256


@pytest.mark.slow
def test_dev_mgd_and_ka_chains_run_with_pretrained_teachers(camvid_root: Path, tmp_path: Path) -> None:
    for arch in ("efficientnet_lite1", "efficientnet_lite2"):
        pytest.importorskip(pretrained.WHEELS[arch].module, reason="make setup installs the weight wheels")
    for name in ("deep", "wide"):
        cfg = load_config(CONFIGS / f"dev_mgd_teacher_{name}.yaml", TOY)
        assert cfg.model.arch == {"deep": "efficientnet_lite2", "wide": "efficientnet_lite1"}[name]
        Trainer(cfg, camvid_root, tmp_path / name, device="cpu", progress=False).run()
    teachers = f"{{wide: {tmp_path}/wide/final, deep: {tmp_path}/deep/final}}"
    cfg = load_config(CONFIGS / "dev_slimseg_mgd_1of8.yaml",
                      [*TOY, f"extras=[{{name: mgd, teachers: {teachers}}}]"])
    trainer = Trainer(cfg, camvid_root, tmp_path / "mgd", device="cpu", progress=False)
    logs = trainer.train_step(next(iter(trainer.loader)), next(trainer.unlabeled_batches()))
    for w in ("w1", "w0.25"):
        assert logs[f"{w}/mgd_pixel"] > 0 and logs[f"{w}/mgd_region"] >= 0 and f"{w}/boundary_bce" in logs
    # KA with `teacher: self`: a run started from a trained checkpoint distils from a frozen copy of it.
    Trainer(load_config(CONFIGS / "camvid_dev_lite0.yaml", TOY), camvid_root, tmp_path / "t",
            device="cpu", progress=False).run()
    ae = load_config(CONFIGS / "dev_ka_autoencoder.yaml",
                     [*TOY, f"extras=[{{name: ka_autoencoder, teacher: {tmp_path}/t/final}}]"])
    Trainer(ae, camvid_root, tmp_path / "ae", device="cpu", progress=False).run()
    ka = load_config(CONFIGS / "dev_slimseg_ka.yaml", [
        *TOY, f"train.init={tmp_path}/t/final",
        f"extras=[{{name: ka, teacher: self, autoencoder: {tmp_path}/ae/ka_autoencoder}}]"])
    trainer = Trainer(ka, camvid_root, tmp_path / "ka", device="cpu", progress=False)
    teacher = trainer.extras[0].teacher.net.state_dict()
    start = trainer.runner.unique_nets()[0][1].state_dict()
    assert all(torch.equal(v, start[k]) for k, v in teacher.items())  # `self` = the loaded starting weights
    logs = trainer.train_step(next(iter(trainer.loader)), None)
    assert logs["w0.25/ka_adapt"] > 0 and "w1/ka_adapt" not in logs  # students are the narrower widths
