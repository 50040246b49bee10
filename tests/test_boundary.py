"""Ground-truth boundary maps and trimap bands: exact values on small synthetic label maps."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.training.boundary import boundary_map, trimap_band  # noqa: E402

V = 9  # void / ignore index in these tests


def test_vertical_edge_3x3_marks_both_sides() -> None:
    lab = torch.tensor([[0, 0, 1, 1]] * 3)
    expected = torch.tensor([[0, 1, 1, 0]] * 3, dtype=torch.float32)
    assert torch.equal(boundary_map(lab, 3, V, kernel=3), expected)


def test_kernel_5_widens_the_band() -> None:
    lab = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    expected = torch.tensor([[0, 1, 1, 1, 1, 0]] * 2, dtype=torch.float32)
    assert torch.equal(boundary_map(lab, 3, V, kernel=5), expected)


def test_void_is_never_boundary_and_does_not_create_one() -> None:
    lab = torch.tensor([[0, 0, V, 1],
                        [0, 0, V, 1],
                        [0, 0, V, 1]])
    # 3x3: the void column separates 0 and 1 (distance 2), so nothing is a boundary.
    assert boundary_map(lab, 3, V, kernel=3).sum() == 0
    # 5x5: 0 at column 1 sees the 1 at column 3; column 3 sees the 0 at column 1; void stays 0.
    expected = torch.tensor([[0, 1, 0, 1]] * 3, dtype=torch.float32)
    assert torch.equal(boundary_map(lab, 3, V, kernel=5), expected)


def test_diagonal_neighbour_counts_and_batch_dim() -> None:
    lab = torch.tensor([[[0, 0, 0],
                         [0, 0, 0],
                         [0, 0, 2]]])
    expected = torch.tensor([[[0, 0, 0],
                              [0, 1, 1],
                              [0, 1, 1]]], dtype=torch.float32)
    out = boundary_map(lab, 3, V, kernel=3)
    assert out.shape == (1, 3, 3)
    assert torch.equal(out, expected)


def test_uniform_label_has_no_boundary() -> None:
    assert boundary_map(torch.full((5, 7), 2), 3, V).sum() == 0


def test_trimap_band_distance() -> None:
    lab = torch.tensor([[0] * 4 + [1] * 4])  # edge between columns 3 and 4
    assert torch.equal(trimap_band(lab, 2, V, 0), torch.tensor([[0, 0, 0, 1, 1, 0, 0, 0]], dtype=torch.bool))
    assert torch.equal(trimap_band(lab, 2, V, 2), torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool))


def test_trimap_band_excludes_void() -> None:
    lab = torch.tensor([[V, 0, 1, V]])
    assert torch.equal(trimap_band(lab, 2, V, 3), torch.tensor([[0, 1, 1, 0]], dtype=torch.bool))


def test_even_kernel_rejected() -> None:
    with pytest.raises(ValueError, match="odd"):
        boundary_map(torch.zeros(3, 3, dtype=torch.long), 2, V, kernel=4)
