"""Loss terms, one module per family; the registry imports every family on its first lookup."""

from slimseg_ros.training.losses.registry import LOSSES, LossContext, WeightedLoss, build_loss, register

__all__ = ["LOSSES", "LossContext", "WeightedLoss", "build_loss", "register"]
