"""Knowledge Adaptation terms (He et al. CVPR 2019): feature adaptation and affinity distillation.

Both compare a student width's decoder feature with the frozen teacher's autoencoder code E(phi_t), which the
`ka` extras provider puts in `ctx.extra["ka_code"]` (detached). The student first passes an adapter: a 3x3
conv + BN + ReLU private to each student width (C_f for adaptation, C_a for affinity). Adapters live in the
terms, so the trainer optimises them with the model; they are training-only and never exported.

The adapter input is the slimmed decoder feature, whose channel count depends on the width; each width's
adapter is allocated for the full-width channel count (`student_channels`) and uses the first c input
channels, the same slicing rule as the slimmable network itself.

    - {name: ka_adapt, weight: 50.0, code_channels: 64, student_channels: 128, widths: [0.25, 0.5, 0.75]}
    - {name: ka_affinity, weight: 1.0, code_channels: 64, student_channels: 128, widths: [0.25, 0.5, 0.75]}
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.losses.registry import LossContext, register


def width_key(width: float) -> str:
    """ModuleDict keys cannot contain '.', so 0.25 -> 'w0_25'."""
    return "w" + f"{float(width):g}".replace(".", "_")


class SlicedAdapter(nn.Module):
    """3x3 conv (+BN+ReLU) whose weight is sized for the widest student; a narrower input uses a slice."""

    def __init__(self, max_in: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c > self.conv.in_channels:
            raise SlimsegError(
                f"student feature has {c} channels, adapter was built for at most {self.conv.in_channels}",
                "set student_channels in the ka_* loss terms to the model's full-width decoder channels",
            )
        w = self.conv.weight[:, :c]
        return F.relu(self.bn(F.conv2d(x, w, None, self.conv.stride, self.conv.padding)))


def normalized_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (nn.L1Loss) between per-location L2-normalised feature maps.

    Mean over all elements, as the public reimplementations do; a per-location sum over channels would
    scale with the code width and, at beta = 50, drown the CE term.
    """
    return F.l1_loss(F.normalize(a, dim=1), F.normalize(b, dim=1))


def pool_to_bound(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """Average-pool so neither side exceeds max_side: the m x m affinity stays at most max_side^4 entries."""
    h, w = x.shape[-2:]
    if h <= max_side and w <= max_side:
        return x
    return F.adaptive_avg_pool2d(x, (min(h, max_side), min(w, max_side)))


def cosine_affinity(x: torch.Tensor) -> torch.Tensor:
    """[N,C,h,w] -> [N,m,m] cosine similarity between all spatial positions (m = h*w)."""
    v = F.normalize(x.flatten(2), dim=1)
    return v.transpose(1, 2) @ v


def affinity_l2(a: torch.Tensor, b: torch.Tensor, max_side: int = 32) -> torch.Tensor:
    """Mean squared difference of the (pooled) spatial affinity matrices of two feature maps."""
    return F.mse_loss(
        cosine_affinity(pool_to_bound(a, max_side)), cosine_affinity(pool_to_bound(b, max_side))
    )


class _KATerm(nn.Module):
    """Shared part: per-width adapters, lookup of the teacher code, skip of the teacher width."""

    def __init__(
        self,
        code_channels: int,
        student_channels: int,
        widths: Iterable[float],
        stride: int = 2,
        skip_widest: bool = True,
    ) -> None:
        super().__init__()
        self.widths = sorted(float(w) for w in widths)
        if not self.widths:
            raise SlimsegError("ka terms need the student widths", "e.g. widths: [0.25, 0.5, 0.75]")
        self.skip_widest = skip_widest
        self.adapters = nn.ModuleDict(
            {width_key(w): SlicedAdapter(student_channels, code_channels, stride) for w in self.widths}
        )

    def pair(self, ctx: LossContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(adapted student feature, teacher code) at the code's size, or None when this width is skipped."""
        if self.skip_widest and ctx.is_widest:
            return None
        key = width_key(ctx.width)
        if key not in self.adapters:
            if ctx.is_widest:
                return None
            raise SlimsegError(
                f"no KA adapter for width {ctx.width}", f"list it in the term's widths (has {self.widths})"
            )
        code = ctx.extra.get("ka_code")
        if code is None:
            raise SlimsegError("ka loss terms need the teacher code", "add `extras: [ka]` to the config")
        student = self.adapters[key](ctx.student["feat"])
        if student.shape[-2:] != code.shape[-2:]:
            student = F.interpolate(student, size=code.shape[-2:], mode="bilinear", align_corners=False)
        return student, code.detach()


@register("ka_adapt")
class KAAdaptLoss(_KATerm):
    """L_adapt = || n(E(phi_t)) - n(C_f(phi_s)) ||_1 with n = per-location L2 normalisation (beta = 50)."""

    def forward(self, ctx: LossContext) -> torch.Tensor | None:
        pair = self.pair(ctx)
        return None if pair is None else normalized_l1(*pair)


@register("ka_affinity")
class KAAffinityLoss(_KATerm):
    """L_aff = L2 between spatial cosine-affinity matrices of E(phi_t) and C_a(phi_s) (gamma = 1)."""

    def __init__(self, *args, max_side: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_side = int(max_side)

    def forward(self, ctx: LossContext) -> torch.Tensor | None:
        pair = self.pair(ctx)
        return None if pair is None else affinity_l2(pair[0], pair[1], self.max_side)
