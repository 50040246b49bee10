"""MGD terms: pixel (pseudo-label CE), image (pooled-logit L1), region (7x7 self-similarity MSE)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from probe_terms import scalar_term  # noqa: E402

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.losses import LossContext, WeightedLoss  # noqa: E402
from slimseg_ros.training.losses.mgd import pooled_logit_l1, region_self_similarity  # noqa: E402

torch.set_num_threads(1)

TERMS = [
    {"name": "mgd_pixel", "weight": 1.0, "teachers": ["wide", "deep"]},
    {"name": "mgd_image", "weight": 1.0e-3, "teacher": "deep"},
    {"name": "mgd_region", "weight": 100.0, "teacher": "wide"},
]


def _ctx(student: dict, teachers: dict, ignore: int = 11) -> LossContext:
    extra = {
        "mgd": {
            "pseudo": {k: v["logits"].argmax(1) for k, v in teachers.items()},
            "logits": {k: v["logits"] for k, v in teachers.items()},
            "feat": {k: v["feat"] for k, v in teachers.items()},
        }
    }
    return LossContext(
        student=student, target=None, width=0.5, is_widest=False, ignore_index=ignore, extra=extra
    )


def test_image_and_region_zero_for_identical_positive_otherwise() -> None:
    a = torch.randn(2, 11, 16, 16)
    assert float(pooled_logit_l1(a, a)) == 0.0
    assert float(pooled_logit_l1(a, a + 0.5)) == pytest.approx(11 * 0.5, rel=1e-5)
    f = torch.randn(2, 32, 14, 14)
    sim = region_self_similarity(f)
    assert sim.shape == (2, 49, 49)
    assert float(((sim - region_self_similarity(f)) ** 2).mean()) == 0.0
    assert float(((sim - region_self_similarity(torch.randn(2, 8, 14, 14))) ** 2).mean()) > 1e-3


def test_pixel_term_low_when_student_agrees_and_ignores_void() -> None:
    loss = WeightedLoss([TERMS[0]])
    logits = torch.randn(1, 11, 8, 8)
    teachers = {"wide": {"logits": logits, "feat": None}, "deep": {"logits": logits, "feat": None}}
    onehot = torch.nn.functional.one_hot(logits.argmax(1), 11).permute(0, 3, 1, 2).float()
    agree = _ctx({"logits": 50 * onehot, "feat": None}, teachers)
    disagree = _ctx({"logits": -50 * onehot, "feat": None}, teachers)
    assert float(loss(agree)[0]) < 1e-3 < float(loss(disagree)[0])
    ctx = _ctx({"logits": logits, "feat": None}, teachers)
    ctx.extra["mgd"]["pseudo"] = {k: torch.full((1, 8, 8), 11) for k in ("wide", "deep")}
    assert float(loss(ctx)[0]) == 0.0  # everything ignored: no NaN


def test_all_terms_zero_for_identical_student_and_gradients_only_to_student() -> None:
    torch.manual_seed(0)
    student = torch.nn.Conv2d(3, 11, 1)
    wide_net = torch.nn.Conv2d(3, 11, 1).requires_grad_(False)
    deep_net = torch.nn.Conv2d(3, 11, 1).requires_grad_(False)
    x = torch.randn(2, 3, 14, 14)
    loss = WeightedLoss(TERMS)
    s = student(x)
    teachers = {n: {"logits": net(x), "feat": net(x)} for n, net in (("wide", wide_net), ("deep", deep_net))}
    total, parts = loss(_ctx({"logits": s, "feat": s}, teachers))
    assert set(parts) == {"mgd_pixel", "mgd_image", "mgd_region"} and all(v > 0 for v in parts.values())
    total.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in [*wide_net.parameters(), *deep_net.parameters()])
    # identical teacher: image and region terms vanish
    same = {n: {"logits": s.detach(), "feat": s.detach()} for n in ("wide", "deep")}
    _, parts = WeightedLoss(TERMS[1:])(_ctx({"logits": s, "feat": s}, same))
    assert parts["mgd_image"] == 0.0 and parts["mgd_region"] == pytest.approx(0.0, abs=1e-9)


def test_missing_teacher_outputs_are_clear_errors() -> None:
    s = torch.randn(1, 11, 8, 8)
    ctx = LossContext(student={"logits": s, "feat": s}, target=None, width=1.0, is_widest=True)
    with pytest.raises(SlimsegError, match="extras"):
        WeightedLoss([TERMS[1]])(ctx)
    ctx = _ctx({"logits": s, "feat": s}, {"wide": {"logits": s, "feat": s}})
    with pytest.raises(SlimsegError, match="teacher 'deep'"):
        WeightedLoss([TERMS[1]])(ctx)


# ---- through the real trainer: partition, both teachers' pre-training, the MGD student ------------------
DATA = Path(os.environ.get("SLIMSEG_DATA", Path(__file__).resolve().parents[1].parent / "shared/data/camvid"))
CONFIGS = Path(__file__).resolve().parents[1] / "training/configs"
TINY_MODEL = {"widths": [0.25, 0.5, 1.0], "ppm_channels": 16, "decoder_channels": 32, "boundary_channels": 16}
TINY_DATA = {"crop": [64, 64], "scale": [0.2, 0.3], "num_workers": 0, "limit": 4, "val_split": None}
TINY_TRAIN = {"steps": 1, "batch_size": 2, "amp": "none", "ckpt_every": 0, "val_every": 0, "threads": 1}


def tiny(config: str, unlabeled: Path) -> dict:
    """A shipped config shrunk to CPU-test size (same method, extras and loss terms)."""
    from slimseg_ros.training.config import load_config

    cfg = load_config(CONFIGS / config).to_dict()
    model = {**TINY_MODEL, "widths": [1.0]} if len(cfg["model"]["widths"]) == 1 else TINY_MODEL
    cfg["model"].update(model)
    cfg["data"].update(TINY_DATA)
    cfg["data"]["unlabeled"] = {"folders": [str(unlabeled)], "batch_size": 4}
    cfg["train"].update(TINY_TRAIN)
    return cfg


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
def test_mgd_teachers_then_student_through_trainer(tmp_path: Path) -> None:
    from slimseg_ros.training.partition import make_partition, materialize_partition, split_stems
    from slimseg_ros.training.trainer import Trainer

    paths = materialize_partition(DATA, make_partition(split_stems(DATA), "1/8", seed=0), tmp_path / "part")
    assert len(list((paths["data"] / "train").iterdir())) == 46
    assert len(list(paths["unlabeled"].iterdir())) == 321
    for name in ("wide", "deep"):
        cfg = tiny(f"mgd_teacher_{name}.yaml", paths["unlabeled"])
        logs = Trainer(cfg, paths["data"], tmp_path / name, device="cpu", progress=False).run()
        assert logs["checkpoints"] and logs["step"] == 1
        saved = (tmp_path / name / "labeled.txt").read_text()
        assert saved == (tmp_path / "part/labeled.txt").read_text()  # the partition is recorded with the run
    cfg = tiny("slimseg_mgd_1of8.yaml", paths["unlabeled"])
    mgd_spec = next(e for e in cfg["extras"] if e["name"] == "mgd")
    mgd_spec["teachers"] = {n: str(tmp_path / n / "final") for n in ("wide", "deep")}
    trainer = Trainer(cfg, paths["data"], tmp_path / "student", device="cpu", progress=False)
    teachers = next(e for e in trainer.extras if hasattr(e, "nets")).nets
    frozen = {n: {k: v.clone() for k, v in t.state_dict().items()} for n, t in teachers.items()}
    student_before = {k: v.clone() for k, v in trainer.runner.state_dict().items()}
    logs = trainer.train_step(next(iter(trainer.loader)), next(trainer.unlabeled_batches()))
    for w in ("w1", "w0.5", "w0.25"):  # every width gets the MGD terms next to SlimSeg's
        assert logs[f"{w}/mgd_pixel"] > 0 and logs[f"{w}/mgd_region"] > 0 and f"{w}/mgd_image" in logs
        assert f"{w}/boundary_bce" in logs
    assert "w0.5/kd" in logs and "w1/ce" in logs
    changed = [k for k, v in trainer.runner.state_dict().items() if not torch.equal(v, student_before[k])]
    assert any("encoder" in k for k in changed)
    for n, t in teachers.items():  # frozen teachers: weights and BN statistics untouched
        assert all(torch.equal(v, t.state_dict()[k]) for k, v in frozen[n].items())
        assert not any(p.requires_grad for p in t.parameters())


def test_mgd_step_needs_unlabelled_pairs() -> None:
    from slimseg_ros.training.semi import split_pair

    with pytest.raises(SlimsegError, match="unlabelled"):
        split_pair(None, "mgd")
    with pytest.raises(SlimsegError, match="at least 2"):
        split_pair({"image": torch.zeros(1, 3, 8, 8)}, "mgd")
    u0, u1 = split_pair({"image": torch.arange(5.0).view(5, 1, 1, 1)}, "mgd")
    assert u0.flatten().tolist() == [0.0, 1.0] and u1.flatten().tolist() == [2.0, 3.0]


def test_teacher_targets_mix_pseudo_labels_with_the_image_mask() -> None:
    """Mixed images get mix(argmax T(u0), argmax T(u1)) with the SAME mask; image/region terms see T(mix)."""
    from slimseg_ros.training.cutmix import box_masks, mix_images, mix_labels
    from slimseg_ros.training.model import ModelConfig, SlimSegNet
    from slimseg_ros.training.semi import prepare_mgd_extra
    from slimseg_ros.training.teachers import FrozenTeacher

    torch.manual_seed(0)
    small = {"widths": [1.0], "ppm_channels": 8, "decoder_channels": 16, "boundary_channels": 8}
    nets = {n: FrozenTeacher(SlimSegNet(ModelConfig.from_dict({"arch": a, **small})))
            for n, a in (("wide", "resnet18"), ("deep", "mobilenetv2"))}

    def run(x: torch.Tensor) -> dict:
        return {n: t(x) for n, t in nets.items()}

    lab, u0, u1 = torch.randn(1, 3, 32, 32), torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    mask = box_masks(2, 32, 32, generator=torch.Generator().manual_seed(0))
    mixed = mix_images(u0, u1, mask)
    out = prepare_mgd_extra(nets, lab, u0, u1, mixed, mask, run)
    for n, t in nets.items():
        assert out["pseudo"][n].shape == (3, 32, 32)
        assert torch.equal(out["pseudo"][n][:1], t(lab)["logits"].argmax(1))
        expected = mix_labels(t(u0)["logits"].argmax(1), t(u1)["logits"].argmax(1), mask)
        assert torch.equal(out["pseudo"][n][1:], expected)
        assert torch.allclose(out["logits"][n][1:], t(mixed)["logits"])
        assert out["feat"][n].shape[:2] == (3, 16) and not out["feat"][n].requires_grad


@pytest.mark.skipif(not DATA.is_dir(), reason=f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
def test_partition_run_refuses_the_full_dataset(tmp_path: Path) -> None:
    """A 1/8 config pointed at the full CamVid root would use every label: it must stop with a clear error."""
    from slimseg_ros.training.trainer import Trainer

    cfg = tiny("slimseg_sup_1of8.yaml", tmp_path)
    cfg["data"]["unlabeled"] = None
    with pytest.raises(SlimsegError, match="not a labelled partition"):
        Trainer(cfg, DATA, tmp_path / "run", device="cpu", progress=False)


def test_teacher_pretraining_mean_teacher_average() -> None:
    """loss.ema: pseudo-labels come from an exponential moving average of the weights, updated every step."""
    from slimseg_ros.training.config import load_config
    from slimseg_ros.training.steps import STEPS

    model = [f"model.{k}={v}" for k, v in {**TINY_MODEL, "widths": [1.0]}.items()]
    step = STEPS.get("mgd_teacher")(load_config(CONFIGS / "mgd_teacher_wide.yaml", model))
    assert step.ema_decay == 0.99
    runner = step.build_runner()
    net = runner.net(1.0)
    first = step.update_ema(net)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), net.parameters(), strict=True))
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    old = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    second = step.update_ema(net)
    for e, o, p in zip(second.parameters(), old, net.parameters(), strict=True):
        assert torch.allclose(e, 0.99 * o + 0.01 * p, atol=1e-6)
    logits = step.pseudo_logits(runner, [torch.randn(2, 3, 32, 32)])
    assert logits[0].shape == (2, 11, 32, 32) and not logits[0].requires_grad
    with pytest.raises(SlimsegError, match="loss.ema"):
        load_config(CONFIGS / "mgd_teacher_wide.yaml", ["loss.ema=1.5"])


def test_semi_terms_with_parameters_are_trained_and_checkpointed(tmp_path: Path) -> None:
    """Every term of an MGD step lives in the one loss module the trainer moves, optimises and saves; a
    parameterised mgd_* term used to sit in a second module the trainer never saw."""
    from slimseg_ros.training.config import load_config
    from slimseg_ros.training.semi import MGDStep

    scalar_term("mgd_scaled_test", 2.0, lambda scale, ctx: scale * ctx.student["logits"].mean())
    cfg = load_config(None, ["method=mgd", "model.widths=[0.5,1.0]",
                             "loss.add_terms=[{name: mgd_scaled_test}]"])
    step = MGDStep(cfg)
    scale = step.loss.terms[step.loss.names.index("mgd_scaled_test")].param
    assert any(p is scale for p in step.loss.parameters())
    assert any(k.endswith(".param") for k in step.loss.state_dict())
    logits = torch.randn(2, 11, 4, 4)
    ctx = LossContext(student={"logits": logits}, target=None, width=1.0, is_widest=True, ignore_index=11)
    only, parts = step.loss(ctx, lambda n: n == "mgd_scaled_test")
    assert set(parts) == {"mgd_scaled_test"} and torch.isclose(only, 2 * logits.mean())
