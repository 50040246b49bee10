"""Input normalisation and channel order folded into the network's first conv: no per-pixel work before it.

The camera's uint8 image x is normalised as (x - mean) / std per channel before the first conv. That map is
affine, so it moves into the conv: weights W / std per input channel, bias b - sum(W * mean / std).
This is exact wherever the conv's window lies inside the image. At the border, the conv pads with zeros, and
a zero in the normalised image is the pixel value `mean`, not 0: there the folded conv is off by the padded
taps' share of sum(W * mean / std). That share depends only on the position, so a constant map (`border`,
non-zero only on the output's outer rows and columns) restores the exact result; the exporter folds it to
one initializer added after the conv. With a mean of 0 (the graph subtracted it already) only 1/std is
folded, which is exact without any border map.

Measured on ONNX Runtime's CPU provider (docs/bench.md, "Input normalisation"): the full fold's border Add
sits between the conv and its ReLU6 and breaks ONNX Runtime's blocked-layout conv chain, so it costs more
than the Sub and Mul it removes; folding only 1/std (graph keeps the Sub) is exact and no slower. Dropping
the border map is not exact (about 1 % of labels change), so that variant exists only in the benchmark.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class RawInputConv(nn.Module):
    """A first conv that takes the float 0-255 RGB image x and returns exactly what the original conv returned
    for (x - mean) / std. `mean` is what the graph has not subtracted already (0: scale only)."""

    def __init__(self, conv: nn.Conv2d, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if conv.in_channels != 3 or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"cannot fold the input normalisation into {conv}: need a 3-channel, ungrouped, "
                             "zero-padded conv")
        rgb_mean = torch.tensor(list(mean), dtype=conv.weight.dtype, device=conv.weight.device)
        rgb_scale = 1.0 / torch.tensor(list(std), dtype=conv.weight.dtype, device=conv.weight.device)
        with torch.no_grad():
            weight = conv.weight * rgb_scale.view(1, 3, 1, 1)
            shift = (weight * rgb_mean.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))  # per output channel
            bias = (conv.bias if conv.bias is not None else torch.zeros_like(shift)) - shift
            self.conv = nn.Conv2d(3, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  conv.dilation, bias=True).to(weight.device, weight.dtype)
            self.conv.weight.copy_(weight)
            self.conv.bias.copy_(bias)
        self.register_buffer("mean", rgb_mean.view(1, 3, 1, 1))
        self.exact_at_border = not bool(rgb_mean.any())  # a mean of 0 (image centred before): scale only
        self._border: dict[tuple[int, int], torch.Tensor] = {}

    def border(self, height: int, width: int) -> torch.Tensor:
        """[1, C, H', W'] correction: the padded taps' share of the mean's response (zero inside)."""
        key = (height, width)
        if key not in self._border:
            # Computed outside any trace, so the exported graph holds the map as one initializer rather than
            # the ops that make it (the legacy exporter's constant folding leaves ConstantOfShape chains).
            tracing = torch._C._get_tracing_state()
            torch._C._set_tracing_state(None)
            try:
                with torch.no_grad():
                    mean_image = self.mean.expand(1, 3, height, width)
                    w, c = self.conv.weight, self.conv
                    inside = F.conv2d(mean_image, w, None, c.stride, c.padding, c.dilation)
                    whole = (w * self.mean).sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
                    self._border[key] = (whole - inside).detach().contiguous()
            finally:
                torch._C._set_tracing_state(tracing)
        return self._border[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.exact_at_border:
            return self.conv(x)
        return self.conv(x) + self.border(int(x.shape[-2]), int(x.shape[-1]))


def fold_input(subnet: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """A copy of `subnet` whose first conv (with its BatchNorm) takes x and computes what `subnet` computed
    for (x - mean) / std; `subnet` itself is left unchanged."""
    folded = copy.deepcopy(subnet)
    name, first = next(((n, m) for n, m in folded.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if first is None:
        raise ValueError("the sub-network has no Conv2d to fold the input normalisation into")
    parent_name, _, attr = name.rpartition(".")
    parent = folded.get_submodule(parent_name) if parent_name else folded
    after = getattr(parent, str(int(attr) + 1), None) if attr.isdigit() else None
    if isinstance(parent, nn.Sequential) and isinstance(after, nn.BatchNorm2d):
        # BN first, so the graph is Conv -> Add -> activation: an Add between Conv and BN would stop the
        # runtimes fusing them.
        first = fuse_conv_bn_eval(first.eval(), after.eval())
        setattr(parent, str(int(attr) + 1), nn.Identity())
    setattr(parent, attr, RawInputConv(first, mean, std))
    return folded
