"""What a plug-in may use of a training run: the `TrainContext` the trainer hands to extras and steps.

Plug-ins (extras providers in training/extras.py, teachers.py, semi.py; step strategies in
training/steps.py) get this small, read-only object instead of the Trainer, so they depend on a few named
things rather than on the trainer's inner shape, and a test can build one without a trainer.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.distributed import DistInfo
from slimseg_ros.training.losses import WeightedLoss
from slimseg_ros.training.run_config import RunConfig
from slimseg_ros.training.steps import WidthRunner


@dataclass(frozen=True)
class TrainContext:
    """The run as plug-ins see it: built by the trainer once the student and the loss are on the device."""

    config: RunConfig  # the typed run configuration
    device: torch.device
    runner: WidthRunner  # the student(s), not DDP-wrapped
    loss: WeightedLoss  # every loss term of the run (adapters inside them are trained with the model)
    amp_dtype: torch.dtype | None  # mixed precision of the step (CUDA only), None = fp32
    out_dir: Path  # the run folder
    data_root: Path  # --data
    dist: DistInfo  # rank, world size, is_main

    def autocast(self) -> AbstractContextManager:
        """The step's mixed precision, for frozen helper networks that run with it."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def student(self) -> nn.Module:
        """The one shared slimmable network (methods slimseg, inplace, no_boundary and their extensions)."""
        if not self.runner.shared:
            raise SlimsegError(
                "KA needs one shared slimmable student (method slimseg, inplace or no_boundary)",
                "the independent baseline has no shared network; for teacher 'self' give a checkpoint",
            )
        return self.runner.unique_nets()[0][1]


def amp_dtype(device: torch.device, amp: str | None) -> torch.dtype | None:
    """The autocast dtype of `train.amp` on `device`: mixed precision runs on CUDA only."""
    if device.type != "cuda" or amp in (None, "none"):
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16
