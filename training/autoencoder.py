"""Knowledge Adaptation's feature autoencoder (He et al. CVPR 2019): a compact code of the teacher's features.

The teacher's last features carry more than a small student can reproduce; the paper first trains an
autoencoder on them and distils the *code* E(phi_t) instead. Encoder: a few 3x3 convs (one strided), decoder:
the mirrored transposed convs. Loss: ||phi_t - D(E(phi_t))||^2 + alpha * ||E(phi_t)||_1, both per image (sum
over the map) and averaged over the batch, alpha = 1e-7 as in the paper. After this stage the autoencoder is
frozen; only E is used during KA training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slimseg_ros.errors import SlimsegError


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _deconv_bn_relu(cin: int, cout: int, stride: int, last: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, cout, 3, stride=stride, padding=1, output_padding=stride - 1, bias=last)
    ]
    if not last:  # the reconstruction itself is unbounded (features may be negative before ReLU)
        layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FeatureAutoencoder(nn.Module):
    """E: in -> hidden -> ... -> code (strides as given); D mirrors E back to `in_channels`."""

    def __init__(
        self,
        in_channels: int,
        code_channels: int,
        hidden_channels: int | None = None,
        strides: Iterable[int] = (1, 2, 1),
    ) -> None:
        super().__init__()
        self.strides = tuple(int(s) for s in strides)
        if not self.strides or any(s not in (1, 2) for s in self.strides):
            raise SlimsegError(f"autoencoder strides {self.strides} invalid", "use a list of 1s and 2s")
        hidden = hidden_channels or max(code_channels, in_channels // 2)
        chans = [in_channels] + [hidden] * (len(self.strides) - 1) + [code_channels]
        self.in_channels, self.code_channels, self.hidden_channels = in_channels, code_channels, hidden
        self.encoder = nn.Sequential(
            *(_conv_bn_relu(a, b, s) for a, b, s in zip(chans[:-1], chans[1:], self.strides, strict=True))
        )
        rev = list(reversed(chans))
        n = len(self.strides)
        self.decoder = nn.Sequential(
            *(
                _deconv_bn_relu(a, b, s, last=(i == n - 1))
                for i, (a, b, s) in enumerate(zip(rev[:-1], rev[1:], reversed(self.strides), strict=True))
            )
        )

    @property
    def stride(self) -> int:
        """Total downsampling of the code relative to the features (the adapters must match it)."""
        out = 1
        for s in self.strides:
            out *= s
        return out

    def encode(self, feat: torch.Tensor) -> torch.Tensor:
        """E(phi): the code students are adapted to."""
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise SlimsegError(
                f"autoencoder expects [N,{self.in_channels},h,w] features, got {tuple(feat.shape)}",
                "the teacher's feature width must match the autoencoder's in_channels",
            )
        return self.encoder(feat)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction cropped to the input size, code)."""
        code = self.encode(feat)
        recon = self.decoder(code)[..., : feat.shape[-2], : feat.shape[-1]]
        return recon, code


def autoencoder_loss(
    feat: torch.Tensor, recon: torch.Tensor, code: torch.Tensor, alpha: float = 1e-7
) -> torch.Tensor:
    """Per-image squared reconstruction error plus alpha * per-image L1 of the code, mean over the batch."""
    n = feat.shape[0]
    if recon.shape != feat.shape:
        raise SlimsegError(f"reconstruction {tuple(recon.shape)} does not match features {tuple(feat.shape)}")
    return (F.mse_loss(recon, feat, reduction="sum") + alpha * code.abs().sum()) / n


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a frozen network must neither learn nor update BN statistics."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def train_autoencoder(
    ae: FeatureAutoencoder,
    features: Callable[[], torch.Tensor],
    steps: int,
    lr: float = 1e-3,
    alpha: float = 1e-7,
    log: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fit the autoencoder on teacher features drawn by `features()` (one batch per call); returns losses.

    Adam, because the per-image summed loss has a scale that depends on the feature size; Adam is invariant
    to it, so one learning rate works for every teacher.
    """
    if steps < 1:
        raise SlimsegError(f"autoencoder steps must be >= 1, got {steps}")
    ae.train()
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    losses: list[float] = []
    for step in range(steps):
        with torch.no_grad():
            feat = features().detach()
        recon, code = ae(feat)
        loss = autoencoder_loss(feat, recon, code, alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    return losses


def save_autoencoder(ae: FeatureAutoencoder, path: str | Path, meta: dict | None = None) -> Path:
    """safetensors weights + the constructor arguments in the header, so loading needs no config."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "in_channels": str(ae.in_channels),
        "code_channels": str(ae.code_channels),
        "hidden_channels": str(ae.hidden_channels),
        "strides": ",".join(str(s) for s in ae.strides),
        **{k: str(v) for k, v in (meta or {}).items()},
    }
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in ae.state_dict().items()}, str(path), metadata=header
    )
    return path


def load_autoencoder(path: str | Path) -> tuple[FeatureAutoencoder, dict[str, str]]:
    """Rebuild the autoencoder from its file alone; errors name the file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise SlimsegError(
            f"autoencoder file not found: {path}", "train it first (training/configs/ka_autoencoder.yaml)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        ae = FeatureAutoencoder(
            int(meta["in_channels"]),
            int(meta["code_channels"]),
            int(meta["hidden_channels"]),
            tuple(int(s) for s in meta["strides"].split(",")),
        )
        ae.load_state_dict(load_file(str(path)))
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise SlimsegError(
            f"autoencoder file {path} is unreadable: {exc}", "re-run the autoencoder stage"
        ) from exc
    return ae, meta
