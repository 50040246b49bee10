"""MGD terms (Qin et al. ECCV 2022, reference code JayQine/MGD-SSSS): multi-granularity distillation.

The `mgd` extras provider runs the frozen teachers on the same (labelled + CutMix-mixed unlabelled) batch as
the student and fills `ctx.extra["mgd"]` with, per teacher name:
    pseudo[name]  [N,H,W] long   argmax pseudo-labels (for mixed images: argmax of the teachers' logits on the
                                 two originals mixed with the CutMix mask, as in the reference code)
    logits[name]  [N,C,H,W]      teacher logits on the batch the student sees
    feat[name]    [N,D,h,w]      teacher decoder feature on that batch
Every width of the slimmable student gets these terms:

    - {name: mgd_pixel, weight: 1.0, teachers: [wide, deep]}       # CE vs each teacher's pseudo-labels
    - {name: mgd_image, weight: 1.0e-3, teacher: deep}              # lambda_1: L1 of pooled logits
    - {name: mgd_region, weight: 100.0, teacher: wide}              # lambda_2: 7x7 self-similarity MSE
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.losses.registry import LossContext, register


def _teacher_part(ctx: LossContext, kind: str, name: str) -> torch.Tensor:
    mgd = ctx.extra.get("mgd")
    if mgd is None:
        raise SlimsegError("mgd loss terms need teacher outputs", "add `extras: [mgd]` (or use method: mgd)")
    part = mgd.get(kind, {})
    if name not in part:
        raise SlimsegError(
            f"mgd extras have no {kind} for teacher '{name}'", f"teachers known: {sorted(part)}"
        )
    return part[name].detach()


def pooled_logit_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Image-level term: L1 between globally average-pooled logits, summed over classes, mean over images."""
    s = F.adaptive_avg_pool2d(student, 1).flatten(1)
    t = F.adaptive_avg_pool2d(teacher, 1).flatten(1)
    return (s - t).abs().sum(dim=1).mean()


def region_self_similarity(feat: torch.Tensor, grid: int = 7) -> torch.Tensor:
    """[N,D,h,w] -> [N,g*g,g*g] cosine similarity between the regions of a g x g average-pooled map."""
    v = F.normalize(F.adaptive_avg_pool2d(feat, grid).flatten(2), dim=1, eps=1e-8)
    return v.transpose(1, 2) @ v


@register("mgd_pixel")
class MGDPixelLoss(nn.Module):
    """Pixel level: CE of the student against each teacher's argmax pseudo-labels, summed over teachers."""

    def __init__(self, teachers: Iterable[str] = ("wide", "deep"), ignore_index: int | None = None) -> None:
        super().__init__()
        self.teachers = list(teachers)
        if not self.teachers:
            raise SlimsegError("mgd_pixel needs at least one teacher name")
        self.ignore_index = ignore_index

    def forward(self, ctx: LossContext) -> torch.Tensor:
        ignore = ctx.ignore_index if self.ignore_index is None else self.ignore_index
        logits = ctx.student["logits"]
        total = logits.new_zeros(())
        for name in self.teachers:
            pseudo = _teacher_part(ctx, "pseudo", name).long()
            if pseudo.shape[-2:] != logits.shape[-2:]:
                raise SlimsegError(
                    f"pseudo-labels {tuple(pseudo.shape)} do not match logits {tuple(logits.shape)}"
                )
            if bool((pseudo != ignore).any()):
                total = total + F.cross_entropy(logits, pseudo, ignore_index=ignore)
        return total


@register("mgd_image")
class MGDImageLoss(nn.Module):
    """Image level ("semantic-sensitive"): pooled-logit L1 against the deep teacher (lambda_1 ~ 1e-3)."""

    def __init__(self, teacher: str = "deep") -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return pooled_logit_l1(ctx.student["logits"], _teacher_part(ctx, "logits", self.teacher))


@register("mgd_region")
class MGDRegionLoss(nn.Module):
    """Region level ("content-aware"): 49x49 region self-similarity MSE vs the wide teacher (lambda_2 100)."""

    def __init__(self, teacher: str = "wide", grid: int = 7) -> None:
        super().__init__()
        self.teacher, self.grid = teacher, int(grid)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        t = region_self_similarity(_teacher_part(ctx, "feat", self.teacher).float(), self.grid)
        s = region_self_similarity(ctx.student["feat"].float(), self.grid)
        return F.mse_loss(s, t)
