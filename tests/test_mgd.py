"""MGD terms: pixel (pseudo-label CE), image (pooled-logit L1), region (7x7 self-similarity MSE)."""

from __future__ import annotations

import pytest
import torch
from slimseg_ros.training.losses import LossContext, WeightedLoss
from slimseg_ros.training.losses.mgd import pooled_logit_l1, region_self_similarity

from slimseg_ros.errors import SlimsegError

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
