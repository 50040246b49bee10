"""Slimmable encoders: a ResNet-18-style and a MobileNetV2-style backbone, both built from slimmable units.

Two mainstream families because the method claims to work across networks. Each encoder returns the 1/8
feature (the decoder's skip connection) and the 1/32 feature (input of the context module), and exposes
their per-width channel counts as `skip_channels` / `deep_channels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimseg_ros.training.slimmable import ConvBNAct, channels, fixed

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
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, linear 1x1 project; residual when shapes allow."""

    def __init__(
        self, widths: Sequence[float], in_list: list[int], out_list: list[int], stride: int, expand: int,
        in_base: int,
    ) -> None:
        super().__init__()
        hidden = channels(widths, in_base * expand) if expand != 1 else in_list
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(widths, in_list, hidden, 1, act=nn.ReLU6))
        layers += [
            ConvBNAct(widths, hidden, hidden, 3, stride, depthwise=True, act=nn.ReLU6),
            ConvBNAct(widths, hidden, out_list, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_list == out_list

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2Encoder(nn.Module):
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
        self.low = nn.Sequential(*blocks[:skip_index])
        self.high = nn.Sequential(*blocks[skip_index:])
        self.skip_channels = self.low[-1].block[-1][0].out_channels_list
        self.deep_channels = in_list

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.low(x)
        return skip, self.high(skip)


ENCODERS = {"resnet18": ResNet18Encoder, "mobilenetv2": MobileNetV2Encoder}


def build_encoder(arch: str, widths: Sequence[float]) -> nn.Module:
    """Encoder for `arch`; unknown names fail with the known ones."""
    if arch not in ENCODERS:
        raise ValueError(f"unknown encoder arch {arch!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[arch](widths)
