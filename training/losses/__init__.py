"""Loss terms. Importing this package registers every family (one module per family)."""

from slimseg_ros.training.losses import boundary, distill, ka, mgd, segmentation  # noqa: F401  (registers terms)
from slimseg_ros.training.losses.registry import LOSSES, LossContext, WeightedLoss, build_loss, register

__all__ = ["LOSSES", "LossContext", "WeightedLoss", "build_loss", "register"]
