"""Loss terms: values against direct formulas, None where a term does not apply, gradient routing."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

import torch.nn.functional as F  # noqa: E402

from slimseg_ros.training.losses import LossContext, WeightedLoss, build_loss  # noqa: E402
from slimseg_ros.training.losses.segmentation import SEGNET_CAMVID_WEIGHTS, resolve_class_weights  # noqa: E402

IGN = 11


def _ctx(student: dict, target=None, teacher=None, boundary_gt=None, widest=False) -> LossContext:
    return LossContext(student=student, target=target, width=1.0 if widest else 0.5, is_widest=widest,
                       teacher=teacher, boundary_gt=boundary_gt, ignore_index=IGN)


def _logits(seed: int, n: int = 2, c: int = 3, h: int = 4, w: int = 5) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_ce_matches_torch_and_ignores_void() -> None:
    z = _logits(0)
    y = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(1))
    y[0, 0, :] = IGN
    got = build_loss("ce")(_ctx({"logits": z}, y))
    assert torch.allclose(got, F.cross_entropy(z, y, ignore_index=IGN))


def test_ce_class_weights_and_segnet_preset() -> None:
    z, y = _logits(0), torch.randint(0, 3, (2, 4, 5))
    got = build_loss("ce", class_weights=[1.0, 2.0, 3.0])(_ctx({"logits": z}, y))
    assert torch.allclose(got, F.cross_entropy(z, y, weight=torch.tensor([1.0, 2.0, 3.0])))
    sq = resolve_class_weights("segnet_sqrt")
    assert len(sq) == 11 and math.isclose(sq[6], math.sqrt(SEGNET_CAMVID_WEIGHTS[6]))
    with pytest.raises(ValueError, match="class weights"):
        build_loss("ce", class_weights="segnet")(_ctx({"logits": z}, y))


def test_ohem_keeps_only_hard_pixels() -> None:
    # 4 pixels, 2 classes: two easy (p_true ~ 1) and two hard (p_true ~ 0.5 and ~0.27).
    z = torch.tensor([[10.0, 0.0, 0.0, 0.0], [0.0, 10.0, 0.0, 1.0]]).reshape(1, 2, 1, 4)
    y = torch.tensor([[[0, 1, 0, 0]]])
    per_pixel = F.cross_entropy(z, y, reduction="none").flatten()
    term = build_loss("ce", ohem=True, ohem_thresh=0.7, ohem_min_kept=1)
    assert torch.allclose(term(_ctx({"logits": z}, y)), per_pixel[2:].mean())
    # min_kept larger than the hard set: the hardest `min_kept` pixels are used.
    term3 = build_loss("ce", ohem=True, ohem_thresh=0.7, ohem_min_kept=3)
    assert torch.allclose(term3(_ctx({"logits": z}, y)), per_pixel.topk(3).values.mean())


def test_kd_formula_none_without_teacher_and_teacher_detached() -> None:
    s = _logits(0).requires_grad_()
    t = _logits(1).requires_grad_()
    kd = build_loss("kd", temperature=2.0)
    assert kd(_ctx({"logits": s})) is None
    got = kd(_ctx({"logits": s}, teacher={"logits": t}))
    pt = F.softmax(t / 2, 1)
    expected = 4 * (pt * (F.log_softmax(t / 2, 1) - F.log_softmax(s / 2, 1))).sum(1).mean()
    assert torch.allclose(got, expected, atol=1e-6)
    got.backward()
    assert s.grad is not None and t.grad is None
    same = kd(_ctx({"logits": s}, teacher={"logits": s.detach()}))
    assert float(same.detach()) == pytest.approx(0.0, abs=1e-6)


def test_boundary_bce_is_class_balanced() -> None:
    b = torch.zeros(1, 1, 1, 4)  # logits 0 -> BCE = log 2 everywhere
    gt = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    y = torch.tensor([[[0, 1, 1, IGN]]])  # the last pixel is void: excluded
    student = {"logits": torch.zeros(1, 3, 1, 4), "boundary": b}
    got = build_loss("boundary_bce")(_ctx(student, y, boundary_gt=gt))
    # valid: 1 positive, 2 negatives; weights pos 2/3, neg 1/3 -> sum = log2 * (2/3 + 2/3), mean over 3 pixels
    assert float(got) == pytest.approx(math.log(2) * (4 / 3) / 3, rel=1e-6)
    assert build_loss("boundary_bce")(_ctx({"logits": torch.zeros(1, 3, 1, 4), "boundary": b}, y)) is None


def test_boundary_guided_weights_pixels_by_predicted_boundary() -> None:
    z = _logits(0, n=1, h=1, w=4)
    y = torch.tensor([[[0, 1, 2, 0]]])
    b = torch.tensor([20.0, -20.0, 20.0, -20.0]).reshape(1, 1, 1, 4)  # boundary on pixels 0 and 2
    hard = build_loss("boundary_guided", mode="hard")
    ce = F.cross_entropy(z, y, reduction="none").flatten()
    assert torch.allclose(hard(_ctx({"logits": z, "boundary": b}, y, widest=True)), (ce[0] + ce[2]) / 2)
    soft = build_loss("boundary_guided")
    assert torch.allclose(soft(_ctx({"logits": z, "boundary": b}, y, widest=True)), (ce[0] + ce[2]) / 2,
                          atol=1e-6)
    # Narrower width: KD from the teacher on the same pixels; the boundary logits get no gradient.
    t = _logits(3, n=1, h=1, w=4)
    b.requires_grad_()
    z.requires_grad_()
    got = hard(_ctx({"logits": z, "boundary": b}, y, teacher={"logits": t}))
    pt = F.softmax(t, 1)
    kd = (pt * (F.log_softmax(t, 1) - F.log_softmax(z, 1))).sum(1).flatten()
    assert torch.allclose(got, (kd[0] + kd[2]) / 2, atol=1e-6)
    assert torch.autograd.grad(got, b, allow_unused=True)[0] is None


def test_weighted_loss_on_filters_widths() -> None:
    z, y = _logits(0), torch.randint(0, 3, (2, 4, 5))
    loss = WeightedLoss([{"name": "ce", "weight": 1.0, "apply_to": "widest"},
                         {"name": "ce", "weight": 0.5, "apply_to": "narrower"}])
    total_w, parts_w = loss(_ctx({"logits": z}, y, widest=True))
    total_n, parts_n = loss(_ctx({"logits": z}, y))
    assert torch.allclose(total_n, 0.5 * total_w)
    with pytest.raises(ValueError, match="apply_to must be"):
        WeightedLoss([{"name": "ce", "apply_to": "sometimes"}])
