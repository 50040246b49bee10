"""Cross-entropy with labels: plain, class-weighted (SegNet median-frequency weights) or OHEM.

Class weights counter CamVid's imbalance (road/sky/building cover most pixels; pole, sign, bicyclist few).
`class_weights: segnet_sqrt` uses the square root of SegNet's published median-frequency weights for the
11-class CamVid release (Badrinarayanan et al., SegNet tutorial `segnet_train.prototxt`): the square root
keeps rare classes helped without the noisy gradients of the raw 70x ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.training.losses.registry import LossContext, register

# sky, building, pole, road, pavement, tree, sign_symbol, fence, car, pedestrian, bicyclist
SEGNET_CAMVID_WEIGHTS = (
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
)


def resolve_class_weights(spec: str | Sequence[float] | None) -> list[float] | None:
    """Turn the config value (None, `segnet`, `segnet_sqrt` or a list) into a list of floats."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "segnet":
            return list(SEGNET_CAMVID_WEIGHTS)
        if spec == "segnet_sqrt":
            return [math.sqrt(w) for w in SEGNET_CAMVID_WEIGHTS]
        raise ValueError(f"class_weights: unknown preset {spec!r}; use segnet, segnet_sqrt or a list")
    return [float(w) for w in spec]


def pixel_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel CE [N,H,W] (0 on ignored pixels), computed in float32 even under autocast."""
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index, reduction="none")


@register("ce")
class CrossEntropyTerm(nn.Module):
    """CE of the student logits with the labels; optional class weights and online hard example mining.

    OHEM keeps pixels whose true-class probability is below `ohem_thresh`, but at least `ohem_min_kept`
    of the hardest ones (as in the MGD reference code).
    """

    def __init__(self, class_weights: str | Sequence[float] | None = None, ohem: bool = False,
                 ohem_thresh: float = 0.7, ohem_min_kept: int = 100_000) -> None:
        super().__init__()
        w = resolve_class_weights(class_weights)
        self.register_buffer("class_weight", torch.tensor(w, dtype=torch.float32) if w else None,
                             persistent=False)
        self.ohem, self.ohem_thresh, self.ohem_min_kept = bool(ohem), float(ohem_thresh), int(ohem_min_kept)

    def forward(self, ctx: LossContext) -> torch.Tensor | None:
        if ctx.target is None:
            return None
        logits, target = ctx.student["logits"], ctx.target
        if self.class_weight is not None and self.class_weight.numel() != logits.shape[1]:
            raise ValueError(f"ce: {self.class_weight.numel()} class weights for {logits.shape[1]} classes")
        if not self.ohem:
            return F.cross_entropy(logits.float(), target, weight=self.class_weight,
                                   ignore_index=ctx.ignore_index)
        loss = pixel_ce(logits, target, ctx.ignore_index, self.class_weight)
        valid = target != ctx.ignore_index
        losses = loss[valid]
        if losses.numel() == 0:
            return logits.sum() * 0.0
        hard = losses > -math.log(self.ohem_thresh)
        min_kept = min(self.ohem_min_kept, losses.numel())
        if int(hard.sum()) < min_kept:
            return losses.topk(min_kept).values.mean()
        return losses[hard].mean()
