"""FLOPs and parameter counts per width, measured on the plain sub-network that export actually compiles.

Counting on `model.subnet(w)` (not the slimmable model) guarantees each figure is that width's own cost.
FLOPs come from torch.utils.flop_counter (convolutions and matmuls, 1 multiply-add = 2 FLOPs); BatchNorm,
pooling, activations and resizing are not counted, as is usual for segmentation FLOP tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.model import SlimSegNet

MIN_SIZE = 32  # the network has output stride 32


@dataclass(frozen=True)
class WidthCost:
    """What one width costs at a given input size."""

    width: float
    flops: int
    params: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready mapping."""
        return asdict(self)


def _check_size(height: int, width: int) -> None:
    if height < MIN_SIZE or width < MIN_SIZE:
        raise SlimsegError(
            f"input size {height}x{width} is too small", f"height and width must be >= {MIN_SIZE}"
        )


def count_flops(module: nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass of `module` on a single 3-channel image of height x width."""
    _check_size(height, width)
    param = next(module.parameters(), None)
    x = torch.zeros(1, 3, height, width, device=param.device if param is not None else "cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def count_params(module: nn.Module) -> int:
    """Number of learnable parameters (what a width must store)."""
    return sum(p.numel() for p in module.parameters())


def width_costs(model: SlimSegNet, height: int, width: int) -> list[WidthCost]:
    """FLOPs and params of every width of `model` at height x width, ascending by width."""
    _check_size(height, width)
    costs = []
    for w in model.cfg.widths:
        sub = model.subnet(w)
        costs.append(WidthCost(width=w, flops=count_flops(sub, height, width), params=count_params(sub)))
    return costs
