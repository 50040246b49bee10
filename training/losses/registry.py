"""Loss registry: every loss term is a small nn.Module registered by name and built from config.

A term reads what it needs from a `LossContext` (student outputs at one width, the teacher's outputs, labels,
boundary maps, extra teachers), so SlimSeg, Knowledge Adaptation and MGD terms compose in one weighted sum:

    loss:
      terms:
        - {name: ce, weight: 1.0}
        - {name: kd, weight: 1.0, temperature: 1.0}

YAML keys other than `name`, `weight` and `apply_to` map one-to-one onto the term's constructor arguments.
`apply_to` (optional, default `all`) limits a term to the widest width (`widest`) or to the narrower ones
(`narrower`), e.g. a smaller CE weight next to KD for the narrower widths. The older spelling `"on"` is
accepted too, quoted: YAML reads a bare `on` key as the boolean true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimseg_ros.training.registry import Registry

# Built-in families are imported on first lookup (training/registry.py), whoever imports this module.
LOSSES: Registry[type[nn.Module]] = Registry("loss", builtins=tuple(
    f"slimseg_ros.training.losses.{m}" for m in ("boundary", "distill", "ka", "mgd", "segmentation")))
register = LOSSES.register


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build one registered term; unknown names fail with the list of known ones."""
    return LOSSES.get(name)(**kwargs)


@dataclass
class LossContext:
    """Everything a term may need for one width on one batch.

    `student` / `teacher` are the dicts returned by `model(x, aux=True)` (keys: logits, boundary, feat,
    logits_lr); `teacher` is None for the widest width in SlimSeg (it learns from labels only).
    `extra` carries outputs of other frozen networks (KA autoencoder codes, MGD teachers) by name.
    """

    student: dict[str, torch.Tensor]
    target: torch.Tensor | None  # [N,H,W] long, ignore_index for void/unlabelled
    width: float
    is_widest: bool
    teacher: dict[str, torch.Tensor] | None = None
    boundary_gt: torch.Tensor | None = None  # [N,H,W] float {0,1}, ignore pixels = 0
    ignore_index: int = 255
    extra: dict[str, Any] = field(default_factory=dict)


class WeightedLoss(nn.Module):
    """Weighted sum of named terms; returns the total and each weighted term for logging."""

    def __init__(self, terms: Iterable[dict[str, Any]]) -> None:
        super().__init__()
        specs = [dict(t) for t in terms]
        self.weights: list[float] = [float(s.pop("weight", 1.0)) for s in specs]
        self.names: list[str] = [s["name"] for s in specs]
        for s in specs:
            if any(not isinstance(k, str) for k in s):
                raise ValueError(f"loss term {s.get('name')}: non-text key in {s} (YAML reads `on`/`yes` as "
                                 "booleans; use apply_to: widest|narrower|all)")
        # "on" (quoted in YAML) is the original spelling of apply_to; both are accepted.
        self.on: list[str] = [str(s.pop("apply_to", s.pop("on", "all"))) for s in specs]
        for name, on in zip(self.names, self.on, strict=True):
            if on not in ("all", "widest", "narrower"):
                raise ValueError(f"loss term {name}: apply_to must be all|widest|narrower, got {on!r}")
        self.terms = nn.ModuleList(build_loss(s.pop("name"), **s) for s in specs)

    def forward(self, ctx: LossContext,
                select: Callable[[str], bool] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of the terms that apply to this width; `select(name)` narrows them further (a step that feeds
        different batch parts to different terms calls one module, which the trainer moves, optimises and
        checkpoints whole, twice with complementary selections)."""
        total = ctx.student["logits"].new_zeros(())
        parts: dict[str, float] = {}
        for name, weight, on, term in zip(self.names, self.weights, self.on, self.terms, strict=True):
            if (on == "widest" and not ctx.is_widest) or (on == "narrower" and ctx.is_widest):
                continue
            if select is not None and not select(name):
                continue
            value = term(ctx)
            if value is None:  # a term that does not apply to this width (e.g. KD at the widest)
                continue
            total = total + weight * value
            parts[name] = parts.get(name, 0.0) + float(weight * value.detach())
        return total, parts
