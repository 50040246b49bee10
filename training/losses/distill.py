"""Logit distillation: T^2 * KL(teacher || student) on softened class probabilities, per pixel.

The teacher is the next wider width in SlimSeg (stepwise downward) or the widest in `inplace` mode; it is
always detached, so a narrow width never pulls a wider one towards itself. The widest width has no teacher
(ctx.teacher is None) and the term returns None there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.training.losses.registry import LossContext, register


def pixel_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-pixel T^2 * KL(softmax(t/T) || softmax(s/T)) as [N,H,W], teacher detached, float32."""
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher.detach().float() / t, dim=1)
    return (t * t) * (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)


@register("kd")
class KDTerm(nn.Module):
    """Distil the teacher's class distribution into the student, averaged over pixels.

    `mask_ignore: true` averages over labelled pixels only; the default uses every pixel, since the
    teacher's opinion on void pixels is still a useful target.
    """

    def __init__(self, temperature: float = 1.0, mask_ignore: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"kd temperature must be > 0, got {temperature}")
        self.temperature, self.mask_ignore = float(temperature), bool(mask_ignore)

    def forward(self, ctx: LossContext) -> torch.Tensor | None:
        if ctx.teacher is None:
            return None
        kd = pixel_kd(ctx.student["logits"], ctx.teacher["logits"], self.temperature)
        if self.mask_ignore and ctx.target is not None:
            valid = (ctx.target != ctx.ignore_index).float()
            return (kd * valid).sum() / valid.sum().clamp_min(1.0)
        return kd.mean()
