"""CutMix: images and pseudo-labels are mixed with the same box mask; masks are seedable and sized."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.errors import SlimsegError  # noqa: E402
from slimseg_ros.training.cutmix import box_masks, mix_images, mix_labels  # noqa: E402


def test_masks_binary_seeded_and_cover_prop_range() -> None:
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    m1 = box_masks(64, 48, 64, generator=g1)
    m2 = box_masks(64, 48, 64, generator=g2)
    assert m1.shape == (64, 1, 48, 64)
    assert torch.equal(m1, m2)
    assert set(m1.unique().tolist()) <= {0.0, 1.0}
    share = m1.mean(dim=(1, 2, 3))
    # 3 boxes of total area 25-50 % (overlaps XOR-cancel, so a little less is possible)
    assert float(share.min()) > 0.05 and float(share.max()) <= 0.5 + 0.02
    assert 0.2 < float(share.mean()) < 0.45


def test_images_and_labels_mixed_with_same_mask() -> None:
    g = torch.Generator().manual_seed(1)
    n, h, w = 2, 24, 32
    a, b = torch.zeros(n, 3, h, w), torch.ones(n, 3, h, w)
    la, lb = torch.full((n, h, w), 3), torch.full((n, h, w), 7)
    mask = box_masks(n, h, w, generator=g)
    img = mix_images(a, b, mask)
    lab = mix_labels(la, lb, mask)
    from_b_img = img[:, 0] == 1.0
    from_b_lab = lab == 7
    assert torch.equal(from_b_img, from_b_lab)
    assert torch.equal(from_b_img, mask[:, 0].bool())
    assert from_b_img.any() and (~from_b_img).any()
    assert lab.dtype == la.dtype


def test_mix_of_logits_argmax_equals_mix_of_argmax() -> None:
    """Mixing teacher logits then argmax equals mixing the teachers' pseudo-labels (masks are 0/1)."""
    g = torch.Generator().manual_seed(2)
    la, lb = torch.randn(2, 5, 16, 16, generator=g), torch.randn(2, 5, 16, 16, generator=g)
    mask = box_masks(2, 16, 16, generator=g)
    assert torch.equal(mix_images(la, lb, mask).argmax(1), mix_labels(la.argmax(1), lb.argmax(1), mask))


def test_bad_shapes_are_clear_errors() -> None:
    with pytest.raises(SlimsegError, match="differ in shape"):
        mix_images(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), torch.zeros(1, 1, 4, 4))
    with pytest.raises(SlimsegError, match="does not fit"):
        mix_images(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 8, 8))
    with pytest.raises(SlimsegError, match="prop_range"):
        box_masks(1, 4, 4, prop_range=(0.6, 0.2))
