"""The deployed graph of one width: uint8 camera image in, uint8 label map out, everything else inside.

Putting the cast, normalisation, post-processing and argmax in the graph means the host moves one byte per
pixel each way instead of one float per class per pixel, and every backend (ONNX Runtime, TensorRT, the
PyTorch backend, which runs this same module) computes exactly the same thing.

Normalisation (`INPUT_NORMS`, the first is the default; engines/input_fold.py says how, docs/bench.md
"Input normalisation" has the figures): `scale` subtracts the mean in the graph and has 1/std folded into
the first conv's weights (exact, one full-resolution op fewer); `graph` subtracts and multiplies (the graph
before issue 15); `fold` moves the mean into the conv's bias too, made exact at the border by a constant
map (measured slower on ONNX Runtime's CPU provider).

Post-processing modes (their names and the default are defined once, in slimseg_ros/manifest.py):
- `fast`: argmax on the 1/8-resolution logits, then nearest upsampling of the labels. The issue measured
  bilinear upsampling of full-resolution logits as the dominant cost of narrow widths on a GPU.
- `quarter`: bilinear 2x upsampling of the 1/8 logits, argmax at 1/4, nearest upsampling of the labels:
  1/16 of the exact mode's upsampling work, label borders on a 4-pixel grid.
- `exact`: the network's own full-resolution logits (bilinear upsampling inside `subnet(x)`), then argmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.engines.input_fold import fold_input
from slimseg_ros.manifest import DEFAULT_POSTPROCESS, POSTPROCESS_MODES

__all__ = ["DEFAULT_POSTPROCESS", "INPUT_NORMS", "NETWORK_ONLY", "POSTPROCESS_MODES", "DeployGraph"]

NETWORK_ONLY = "none"  # timing reference for the benchmark: normalise + network, 1/8 logits out, no labels
INPUT_NORMS = ("scale", "graph", "fold")  # first is the default: see the module docstring


class DeployGraph(nn.Module):
    """Wraps a width's plain sub-network with input normalisation and label post-processing."""

    def __init__(self, subnet: nn.Module, mean: Sequence[float], std: Sequence[float],
                 postprocess: str = DEFAULT_POSTPROCESS, keep_logits: bool = False,
                 input_norm: str = INPUT_NORMS[0]) -> None:
        super().__init__()
        if postprocess not in (*POSTPROCESS_MODES, NETWORK_ONLY):
            raise ValueError(f"postprocess must be one of {POSTPROCESS_MODES}, got {postprocess!r}")
        if postprocess != "exact" and not hasattr(subnet, "forward_lowres"):
            raise ValueError(f"postprocess {postprocess!r} needs subnet.forward_lowres (logits at 1/8)")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        if input_norm == "graph":
            self.subnet = subnet
        else:
            self.subnet = fold_input(subnet, mean if input_norm == "fold" else [0.0] * 3, std)
        self.postprocess = postprocess
        self.keep_logits = keep_logits
        self.input_norm = input_norm
        # 0-255 scale statistics, so the uint8 image is normalised without a separate /255.
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """image: uint8 [N,H,W,3] RGB -> labels uint8 [N,H,W] (and logits when keep_logits)."""
        height, width = int(image.shape[1]), int(image.shape[2])
        x = image.permute(0, 3, 1, 2).to(self.mean.dtype)
        if self.input_norm == "graph":
            x = (x - self.mean) * self.inv_std
        elif self.input_norm == "scale":
            x = x - self.mean
        if self.postprocess == NETWORK_ONLY:
            return self.subnet.forward_lowres(x)
        if self.postprocess in ("fast", "quarter"):
            logits = self.subnet.forward_lowres(x)
            if self.postprocess == "quarter":  # 2x bilinear first: label borders on a 4-pixel grid, not 8
                size = (int(logits.shape[-2]) * 2, int(logits.shape[-1]) * 2)
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            low = logits.argmax(dim=1, keepdim=True).to(x.dtype)  # class ids <= 255 are exact in fp16 too
            labels = F.interpolate(low, size=(height, width), mode="nearest")[:, 0]
        else:
            logits = self.subnet(x)
            labels = logits.argmax(dim=1)
        labels = labels.to(torch.uint8)
        if self.keep_logits:
            return labels, logits.float()
        return labels
