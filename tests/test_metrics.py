"""Confusion matrix and IoU against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch, not in a runtime install (pip install .[train])")

from slimseg_ros.training.metrics import (  # noqa: E402
    SegmentationMeter,
    confusion_matrix,
    iou_per_class,
    mean_iou,
)

IGN = 255


def test_confusion_matrix_by_hand() -> None:
    target = torch.tensor([[0, 0, 1, 1],
                           [2, 2, IGN, 1]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [2, 0, 0, 2]])
    cm = confusion_matrix(pred, target, 3, IGN).numpy()
    # rows = GT, cols = prediction; the ignored pixel is not counted.
    expected = np.array([[1, 1, 0],
                         [0, 2, 1],
                         [1, 0, 1]])
    assert np.array_equal(cm, expected)
    iou = iou_per_class(cm)
    # class 0: tp 1, fp 1 (from GT 2), fn 1 -> 1/3; class 1: tp 2, fp 1, fn 1 -> 2/4;
    # class 2: tp 1, fp 1, fn 1 -> 1/3
    assert np.allclose(iou, [1 / 3, 2 / 4, 1 / 3])
    assert math.isclose(mean_iou(cm), (1 / 3 + 1 / 2 + 1 / 3) / 3)


def test_class_absent_from_gt_and_prediction_is_excluded() -> None:
    cm = np.array([[3, 1, 0],
                   [0, 2, 0],
                   [0, 0, 0]])
    iou = iou_per_class(cm)
    assert np.isnan(iou[2])
    assert math.isclose(mean_iou(cm), (3 / 4 + 2 / 3) / 2)


def test_class_predicted_but_absent_from_gt_scores_zero() -> None:
    cm = np.array([[2, 1],
                   [0, 0]])
    assert np.allclose(iou_per_class(cm), [2 / 3, 0.0])
    assert math.isclose(mean_iou(cm), 1 / 3)


def test_mask_restricts_pixels() -> None:
    target = torch.tensor([0, 1, 1, 0])
    pred = torch.tensor([0, 0, 1, 1])
    mask = torch.tensor([True, True, False, False])
    cm = confusion_matrix(pred, target, 2, IGN, mask).numpy()
    assert np.array_equal(cm, [[1, 0], [1, 0]])


def test_meter_accumulates_and_reports_names() -> None:
    m = SegmentationMeter(2, IGN)
    m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), torch.tensor([[True, False]]))
    m.update(torch.tensor([[1, 1]]), torch.tensor([[0, 1]]))
    s = m.summary(["a", "b"])
    # full cm: [[1,1],[0,2]] -> a: 1/2, b: 2/3 ; band cm: [[1,0],[0,0]] -> a: 1, b: undefined
    assert math.isclose(s["miou"], round((1 / 2 + 2 / 3) / 2, 6), abs_tol=1e-6)
    assert s["per_class"] == {"a": 0.5, "b": round(2 / 3, 6)}
    assert s["boundary_miou"] == 1.0
    assert s["per_class_boundary"]["b"] is None
    assert math.isclose(s["pixel_acc"], 0.75)
