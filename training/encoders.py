"""Slimmable encoders: ResNet-18-style, MobileNetV2-style and EfficientNet-Lite backbones.

Several mainstream families because the method claims to work across networks; EfficientNet-Lite is the
one with ImageNet weights (training/pretrained.py) and the one the shipped model uses. Each encoder returns
the 1/8 feature (the decoder's skip connection) and the 1/32 feature (input of the context module),
and expose their per-width channel counts as `skip_channels` / `deep_channels`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from slimseg_ros.training.registry import Registry
from slimseg_ros.training.slimmable import ConvBNAct, channels, fixed, make_divisible

RESNET18_STAGES = (64, 128, 256, 512)  # channels of the stages at 1/4, 1/8, 1/16, 1/32
# MobileNetV2 inverted-residual settings: expansion t, channels c, repeats n, first stride s.
MOBILENETV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 units and an identity or 1x1 projection shortcut)."""

    def __init__(self, widths: Sequence[float], in_list: list[int], out_list: list[int], stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(widths, in_list, out_list, 3, stride)
        self.conv2 = ConvBNAct(widths, out_list, out_list, 3, 1, act=None)
        self.shortcut = (
            ConvBNAct(widths, in_list, out_list, 1, stride, act=None)
            if stride != 1 or in_list != out_list
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet18Encoder(nn.Module):
    """ResNet-18 layout (7x7 stem, max-pool, 4 stages of 2 basic blocks), output stride 32."""

    def __init__(self, widths: Sequence[float], stages: Sequence[int] = RESNET18_STAGES) -> None:
        super().__init__()
        stem = channels(widths, stages[0])
        self.stem = nn.Sequential(ConvBNAct(widths, fixed(widths, 3), stem, 7, 2), nn.MaxPool2d(3, 2, 1))
        layers, in_list = [], stem
        for k, c in enumerate(stages):
            out_list = channels(widths, c)
            stride = 1 if k == 0 else 2
            layers.append(nn.Sequential(BasicBlock(widths, in_list, out_list, stride),
                                        BasicBlock(widths, out_list, out_list, 1)))
            in_list = out_list
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.skip_channels = channels(widths, stages[1])
        self.deep_channels = channels(widths, stages[3])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer1(self.stem(x))
        skip = self.layer2(x)
        return skip, self.layer4(self.layer3(skip))


class InvertedResidual(nn.Module):
    """MobileNetV2 / EfficientNet-Lite MBConv block: 1x1 expand, k x k depthwise, linear 1x1 project.

    Residual when shapes allow. Lite blocks differ from MobileNetV2 ones only in kernel size (3 or 5) and
    BatchNorm epsilon, so one class serves both.
    """

    def __init__(
        self, widths: Sequence[float], in_list: list[int], out_list: list[int], stride: int, expand: int,
        in_base: int, kernel: int = 3, bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        hidden = channels(widths, in_base * expand) if expand != 1 else in_list
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(widths, in_list, hidden, 1, act=nn.ReLU6, bn_eps=bn_eps))
        layers += [
            ConvBNAct(widths, hidden, hidden, kernel, stride, depthwise=True, act=nn.ReLU6, bn_eps=bn_eps),
            ConvBNAct(widths, hidden, out_list, 1, act=None, bn_eps=bn_eps),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_list == out_list

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class LowHighEncoder(nn.Module):
    """Encoder made of one block list split at the last 1/8 block: `low` gives the skip, `high` the deep
    feature. Shared by the MobileNetV2 and EfficientNet-Lite families, which differ only in their blocks."""

    def _split(self, blocks: list[nn.Module], skip_index: int, deep_channels: list[int]) -> None:
        self.low = nn.Sequential(*blocks[:skip_index])
        self.high = nn.Sequential(*blocks[skip_index:])
        self.skip_channels = self.low[-1].block[-1][0].out_channels_list
        self.deep_channels = deep_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.low(x)
        return skip, self.high(skip)


class MobileNetV2Encoder(LowHighEncoder):
    """MobileNetV2 feature extractor (without the final 1280-channel conv), output stride 32."""

    def __init__(
        self, widths: Sequence[float], settings: Sequence[Sequence[int]] = MOBILENETV2_SETTINGS
    ) -> None:
        super().__init__()
        in_base = 32
        in_list = channels(widths, in_base)
        blocks: list[nn.Module] = [ConvBNAct(widths, fixed(widths, 3), in_list, 3, 2, act=nn.ReLU6)]
        stride_so_far, skip_index = 2, None
        for t, c, n, s in settings:
            out_list = channels(widths, c)
            for r in range(n):
                stride = s if r == 0 else 1
                if stride == 2 and stride_so_far == 8 and skip_index is None:
                    skip_index = len(blocks)  # last block at 1/8 is the one before this
                blocks.append(InvertedResidual(widths, in_list, out_list, stride, t, in_base))
                stride_so_far *= stride
                in_list, in_base = out_list, c
        if skip_index is None or stride_so_far != 32:
            raise ValueError("MobileNetV2 settings must reach output stride 32 through a 1/8 stage")
        self._split(blocks, skip_index, in_list)


# EfficientNet-Lite: MBConv stages (expansion, kernel, channels, repeats, first stride) of Lite0, and per
# variant (width coefficient, depth coefficient) as in TensorFlow's efficientnet_lite_builder.py. Lite keeps
# the stem's channels and the first and last stages' repeats fixed across variants ("fix_head_stem").
LITE_STAGES = (
    (1, 3, 16, 1, 1),
    (6, 3, 24, 2, 2),
    (6, 5, 40, 2, 2),
    (6, 3, 80, 3, 2),
    (6, 5, 112, 3, 1),
    (6, 5, 192, 4, 2),
    (6, 3, 320, 1, 1),
)
LITE_VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
                 "efficientnet_lite2": (1.1, 1.2)}
LITE_STEM = 32
LITE_BN_EPS = 1e-3  # TensorFlow's epsilon, which the ImageNet statistics were computed with


def lite_blocks(arch: str) -> list[tuple[int, int, int, int, int]]:
    """Per-block (expand, kernel, in_channels, out_channels, stride) of a Lite variant at full width."""
    wc, dc = LITE_VARIANTS[arch]
    blocks, cin = [], LITE_STEM
    for k, (t, kernel, c, n, s) in enumerate(LITE_STAGES):
        cout = make_divisible(c * wc) if wc != 1.0 else c
        repeats = n if k in (0, len(LITE_STAGES) - 1) else math.ceil(dc * n)
        for r in range(repeats):
            blocks.append((t, kernel, cin, cout, s if r == 0 else 1))
            cin = cout
    return blocks


class EfficientNetLiteEncoder(LowHighEncoder):
    """EfficientNet-Lite feature extractor (stem + MBConv blocks, no 1280-channel head), output stride 32.

    Padding is PyTorch's symmetric k//2, not TensorFlow's SAME: the two differ only by a one-pixel shift at
    stride-2 layers, symmetric padding exports as a plain Conv, and fine-tuning absorbs the shift. The golden
    test compares against the reference implementation built with the same padding (docs/model.md).
    """

    def __init__(self, widths: Sequence[float], arch: str = "efficientnet_lite0") -> None:
        super().__init__()
        stem = channels(widths, LITE_STEM)
        blocks: list[nn.Module] = [ConvBNAct(widths, fixed(widths, 3), stem, 3, 2, act=nn.ReLU6,
                                             bn_eps=LITE_BN_EPS)]
        in_list, stride_so_far, skip_index = stem, 2, None
        for t, kernel, cin, cout, s in lite_blocks(arch):
            if s == 2 and stride_so_far == 8 and skip_index is None:
                skip_index = len(blocks)
            out_list = channels(widths, cout)
            blocks.append(InvertedResidual(widths, in_list, out_list, s, t, cin, kernel, LITE_BN_EPS))
            stride_so_far *= s
            in_list = out_list
        self._split(blocks, skip_index, in_list)


ENCODERS: Registry[Callable[[Sequence[float]], nn.Module]] = Registry("encoder")  # model.arch -> builder
ENCODERS.add("resnet18", ResNet18Encoder)
ENCODERS.add("mobilenetv2", MobileNetV2Encoder)
for _name in LITE_VARIANTS:
    ENCODERS.add(_name, partial(EfficientNetLiteEncoder, arch=_name))


def build_encoder(arch: str, widths: Sequence[float]) -> nn.Module:
    """Encoder for `arch`; unknown names fail with the known ones."""
    return ENCODERS.get(arch)(widths)
