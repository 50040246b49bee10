"""Confusion matrices and IoU: the numbers every width is judged by.

Convention: rows are ground truth, columns are predictions. Pixels labelled with the ignore index (or
outside an optional mask, e.g. a trimap band) are excluded. A class absent from both the ground truth and the
predictions of the whole evaluated set has no defined IoU (0/0) and is left out of the mean; a class that is
predicted but never present scores 0 and counts. This is the usual PASCAL/Cityscapes convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """[C,C] int64 counts (rows GT, cols prediction) over pixels that are labelled and inside `mask`."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    if mask is not None:
        keep &= mask.bool()
    t = target[keep].long()
    p = pred[keep].long().clamp(0, num_classes - 1)
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU of each class from a confusion matrix; NaN where the class is absent from GT and prediction."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(cm: np.ndarray | torch.Tensor) -> float:
    """Mean IoU over the classes with a defined IoU; NaN if none has one."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan


def pixel_accuracy(cm: np.ndarray | torch.Tensor) -> float:
    """Fraction of counted pixels predicted right."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else math.nan


class SegmentationMeter:
    """Accumulates a full-image and a trimap-band confusion matrix over a dataset for one width."""

    def __init__(self, num_classes: int, ignore_index: int, device: torch.device | str = "cpu") -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.cm_band = torch.zeros_like(self.cm)

    def update(self, pred: torch.Tensor, target: torch.Tensor, band: torch.Tensor | None = None) -> None:
        """Add a batch of predicted and ground-truth label maps (and optionally its trimap band)."""
        self.cm += confusion_matrix(pred, target, self.num_classes, self.ignore_index).to(self.cm.device)
        if band is not None:
            self.cm_band += confusion_matrix(pred, target, self.num_classes, self.ignore_index, band).to(
                self.cm.device)

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """mIoU, boundary mIoU, pixel accuracy and per-class IoU (None where undefined) as plain floats."""
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        iou = iou_per_class(self.cm)
        band_iou = iou_per_class(self.cm_band)

        def clean(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 6)

        return {
            "miou": clean(mean_iou(self.cm)),
            "boundary_miou": clean(mean_iou(self.cm_band)) if self.cm_band.sum() > 0 else None,
            "pixel_acc": clean(pixel_accuracy(self.cm)),
            "per_class": {n: clean(v) for n, v in zip(names, iou, strict=True)},
            "per_class_boundary": {n: clean(v) for n, v in zip(names, band_iou, strict=True)},
        }
