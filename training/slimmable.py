"""Slimmable building blocks: one weight tensor shared by every width, one private BatchNorm per width.

Follows Slimmable Networks (Yu et al., ICLR 2019): a conv allocates its widest weight once and slices the
first channels at run time, so narrow widths are true sub-networks of the wide one. Unlike the reference
code, the width list is passed to every layer explicitly (no global config), so layers build and test alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.manifest import same_width


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor` (hardware-friendly), never dropping more than 10%."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def channels(widths: Sequence[float], base: int, divisor: int = 8) -> list[int]:
    """Per-width channel counts of a layer whose full-width count is `base` (the rule used everywhere)."""
    return [make_divisible(w * base, divisor) for w in widths]


def fixed(widths: Sequence[float], n: int) -> list[int]:
    """Per-width channel counts of a layer that never shrinks (the RGB input, the class logits)."""
    return [n] * len(widths)


def width_index(widths: Sequence[float], width: float) -> int:
    """Position of `width` in `widths` (tolerant to YAML float noise); ValueError names the allowed ones."""
    for i, w in enumerate(widths):
        if same_width(width, w):
            return i
    allowed = ", ".join(f"{w:g}" for w in widths)
    raise ValueError(f"width {width!r} is not one of this model's widths; allowed widths: {allowed}")


class _Switchable:
    """Marker and state shared by slimmable layers: the width list and the index of the active width."""

    widths: tuple[float, ...]
    width_idx: int


class SlimmableConv2d(nn.Conv2d, _Switchable):
    """Conv whose active in/out channels depend on the width; weights are the widest ones, sliced.

    `in_segments` handles convs that read a channel concatenation (e.g. pyramid pooling): each segment
    shrinks on its own, so width w reads the first channels of *each* segment rather than the first
    channels of the whole concatenation, keeping weight meaning identical across widths.
    `depthwise=True` makes groups equal to the active channel count (MobileNetV2).
    """

    def __init__(
        self,
        widths: Sequence[float],
        in_channels_list: Sequence[int] | None,
        out_channels_list: Sequence[int],
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        in_segments: Sequence[Sequence[int]] | None = None,
    ) -> None:
        widths = tuple(float(w) for w in widths)
        if in_segments is not None:
            in_segments = [list(s) for s in in_segments]
            in_channels_list = [sum(s[i] for s in in_segments) for i in range(len(widths))]
        if in_channels_list is None:
            raise ValueError("SlimmableConv2d needs in_channels_list or in_segments")
        in_list, out_list = list(in_channels_list), list(out_channels_list)
        for name, lst in (("in_channels_list", in_list), ("out_channels_list", out_list)):
            if len(lst) != len(widths):
                raise ValueError(f"{name} has {len(lst)} entries for {len(widths)} widths")
        if depthwise and in_list != out_list:
            raise ValueError("a depthwise SlimmableConv2d needs equal in and out channel lists")
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        groups = max(in_list) if depthwise else 1
        super().__init__(max(in_list), max(out_list), kernel_size, stride, padding, dilation, groups, bias)
        self.widths = widths
        self.width_idx = len(widths) - 1
        self.in_channels_list = in_list
        self.out_channels_list = out_list
        self.depthwise = depthwise
        self.has_segments = in_segments is not None
        if in_segments is not None:
            for i in range(len(widths)):
                idx, offset = [], 0
                for seg in in_segments:
                    idx.extend(range(offset, offset + seg[i]))
                    offset += max(seg)
                self.register_buffer(f"in_index_{i}", torch.tensor(idx, dtype=torch.long), persistent=False)

    def active_weight(self, i: int) -> torch.Tensor:
        """The weight slice width `i` uses (a view, or a gather for segmented inputs)."""
        w = self.weight[: self.out_channels_list[i]]
        if self.depthwise:
            return w
        if self.has_segments:
            return w.index_select(1, getattr(self, f"in_index_{i}"))
        return w[:, : self.in_channels_list[i]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.width_idx
        bias = self.bias[: self.out_channels_list[i]] if self.bias is not None else None
        groups = self.in_channels_list[i] if self.depthwise else 1
        return F.conv2d(x, self.active_weight(i), bias, self.stride, self.padding, self.dilation, groups)

    def to_plain(self, i: int) -> nn.Conv2d:
        """An ordinary Conv2d holding copies of width `i`'s weights (for export and honest FLOP counts)."""
        cin, cout = self.in_channels_list[i], self.out_channels_list[i]
        conv = nn.Conv2d(
            cin, cout, self.kernel_size, self.stride, self.padding, self.dilation,
            groups=cin if self.depthwise else 1, bias=self.bias is not None,
        ).to(self.weight.device, self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.active_weight(i))
            if self.bias is not None:
                conv.bias.copy_(self.bias[:cout])
        return conv

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, in={self.in_channels_list}, out={self.out_channels_list}"


class SwitchableBatchNorm2d(nn.Module, _Switchable):
    """One private BatchNorm per width: each width keeps its own statistics, so no recalibration is needed."""

    def __init__(self, widths: Sequence[float], num_features_list: Sequence[int], eps: float = 1e-5) -> None:
        super().__init__()
        self.widths = tuple(float(w) for w in widths)
        if len(num_features_list) != len(self.widths):
            n = len(num_features_list)
            raise ValueError(f"num_features_list has {n} entries for {len(widths)} widths")
        self.num_features_list = list(num_features_list)
        self.width_idx = len(self.widths) - 1
        self.bn = nn.ModuleList(nn.BatchNorm2d(c, eps=eps) for c in self.num_features_list)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn[self.width_idx](x)

    def to_plain(self, i: int) -> nn.BatchNorm2d:
        """An ordinary BatchNorm2d copied from width `i`'s private one (parameters and running stats)."""
        src = self.bn[i]
        bn = nn.BatchNorm2d(src.num_features, src.eps, src.momentum, src.affine, src.track_running_stats)
        bn.load_state_dict(src.state_dict())
        return bn.to(src.weight.device, src.weight.dtype)


def slimmable_modules(model: nn.Module) -> Iterable[_Switchable]:
    """Every width-switchable layer in `model`."""
    return (m for m in model.modules() if isinstance(m, _Switchable))


def set_width(model: nn.Module, width: float) -> None:
    """Switch every slimmable layer of `model` to `width` (one call, so forward keeps its usual signature)."""
    layers = list(slimmable_modules(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no slimmable layers to set a width on")
    for layer in layers:
        layer.width_idx = width_index(layer.widths, width)


def get_width(model: nn.Module) -> float:
    """The width `model` currently runs at (read from its first slimmable layer)."""
    for layer in slimmable_modules(model):
        return layer.widths[layer.width_idx]
    raise ValueError(f"{type(model).__name__} has no slimmable layers")


def to_plain(module: nn.Module, i: int) -> nn.Module:
    """Replace, in place, every slimmable layer under `module` by its plain copy at width index `i`.

    Returns the converted module (a new object when `module` itself is a slimmable layer).
    """
    if isinstance(module, (SlimmableConv2d, SwitchableBatchNorm2d)):
        return module.to_plain(i)
    for name, child in list(module.named_children()):
        if isinstance(child, (SlimmableConv2d, SwitchableBatchNorm2d)):
            setattr(module, name, child.to_plain(i))
        else:
            to_plain(child, i)
    return module


class ConvBNAct(nn.Sequential):
    """Slimmable conv -> switchable BN -> optional activation: the unit the whole network is made of.

    `bn_eps` matches BatchNorm to pretrained weights that were trained with another epsilon (TF: 1e-3).
    """

    def __init__(
        self,
        widths: Sequence[float],
        in_list: Sequence[int] | None,
        out_list: Sequence[int],
        kernel_size: int = 3,
        stride: int = 1,
        depthwise: bool = False,
        act: type[nn.Module] | None = nn.ReLU,
        in_segments: Sequence[Sequence[int]] | None = None,
        bn_eps: float = 1e-5,
    ) -> None:
        layers: list[nn.Module] = [
            SlimmableConv2d(widths, in_list, out_list, kernel_size, stride, depthwise=depthwise,
                            in_segments=in_segments),
            SwitchableBatchNorm2d(widths, out_list, eps=bn_eps),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)
