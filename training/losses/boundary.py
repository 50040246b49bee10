"""SlimSeg boundary terms: the boundary head's class-balanced BCE and the boundary-guided segmentation loss.

Boundary-guided loss (our reading of "boundary-masked probability maps"): the width's own predicted boundary
probability sigmoid(b), detached so this term does not train the boundary head, weights each pixel's
segmentation loss: CE with the labels at the widest width, KD from the teacher (next wider width) at the
narrower ones, normalised by the mask's sum. `mode: hard` uses the 0/1 mask sigmoid(b) > threshold instead.
Masking a probability map and taking the loss on the kept pixels is the same as this per-pixel weighting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.training.losses.distill import pixel_kd
from slimseg_ros.training.losses.registry import LossContext, register
from slimseg_ros.training.losses.segmentation import pixel_ce


def _require_boundary(ctx: LossContext, term: str) -> torch.Tensor:
    if "boundary" not in ctx.student:
        raise ValueError(f"{term}: the model output has no 'boundary' map; run the model with aux=True")
    return ctx.student["boundary"]


@register("boundary_bce")
class BoundaryBCETerm(nn.Module):
    """Class-balanced BCE (HED-style): positives weighted by the negative fraction and vice versa.

    Boundary pixels are ~5-10% of an image, so plain BCE would learn "no boundary anywhere". Void pixels
    (ctx.target == ignore) are excluded.
    """

    def forward(self, ctx: LossContext) -> torch.Tensor | None:
        if ctx.boundary_gt is None:
            return None
        logits = _require_boundary(ctx, "boundary_bce").float().squeeze(1)
        gt = ctx.boundary_gt.float()
        valid = torch.ones_like(gt) if ctx.target is None else (ctx.target != ctx.ignore_index).float()
        n_pos = (gt * valid).sum()
        n_neg = ((1 - gt) * valid).sum()
        total = (n_pos + n_neg).clamp_min(1.0)
        weight = valid * (gt * (n_neg / total) + (1 - gt) * (n_pos / total))
        loss = F.binary_cross_entropy_with_logits(logits, gt, weight=weight, reduction="sum")
        return loss / valid.sum().clamp_min(1.0)


@register("boundary_guided")
class BoundaryGuidedTerm(nn.Module):
    """Extra segmentation loss on the pixels the predicted boundary marks (soft or thresholded mask)."""

    def __init__(self, mode: str = "soft", threshold: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__()
        if mode not in ("soft", "hard"):
            raise ValueError(f"boundary_guided mode must be soft|hard, got {mode!r}")
        self.mode, self.threshold, self.temperature = mode, float(threshold), float(temperature)

    def forward(self, ctx: LossContext) -> torch.Tensor | None:
        prob = torch.sigmoid(_require_boundary(ctx, "boundary_guided").detach().float().squeeze(1))
        mask = (prob > self.threshold).float() if self.mode == "hard" else prob
        if ctx.target is not None:
            mask = mask * (ctx.target != ctx.ignore_index).float()
        if ctx.teacher is None:
            if ctx.target is None:
                return None
            per_pixel = pixel_ce(ctx.student["logits"], ctx.target, ctx.ignore_index)
        else:
            per_pixel = pixel_kd(ctx.student["logits"], ctx.teacher["logits"], self.temperature)
        return (per_pixel * mask).sum() / mask.sum().clamp_min(1.0)
