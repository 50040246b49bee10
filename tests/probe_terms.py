"""Test helper: register a loss term that owns one trainable scalar, to check that the trainer finds,
optimises and checkpoints parameters living in loss terms."""

from __future__ import annotations

from collections.abc import Callable

import torch

from slimseg_ros.training.losses import LossContext, register


def scalar_term(name: str, init: float,
                value: Callable[[torch.Tensor, LossContext], torch.Tensor]) -> type[torch.nn.Module]:
    """Register term `name`: a trainable scalar `param` (starts at `init`); it returns value(param, ctx)."""

    class ScalarTerm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.param = torch.nn.Parameter(torch.tensor(float(init)))

        def forward(self, ctx: LossContext) -> torch.Tensor:
            return value(self.param, ctx)

    return register(name)(ScalarTerm)
