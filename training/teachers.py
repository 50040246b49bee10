"""Frozen teachers for distillation, exposed to the trainer as extras providers (`extras:` in config).

`ka`              Knowledge Adaptation: a frozen teacher (a trained slimmable checkpoint at its widest width;
                  `self` = a frozen copy of the run's starting weights, only useful when those are trained)
                  and its frozen feature autoencoder. Each step it puts the teacher's code E(phi_t) into
                  `extra["ka_code"]` for the ka_adapt / ka_affinity terms.
`ka_autoencoder`  The autoencoder stage (with `method: ka_autoencoder`): trains the autoencoder on the frozen
                  teacher's features and writes it to `<out>/ka_autoencoder.safetensors`.
`mgd`             MGD: two frozen teachers (wide and deep configurations). The provider owns loading,
                  freezing and devices; the `mgd` step strategy takes it once at set-up (StepStrategy.bind),
                  since only the step knows which images (labelled, two unlabelled, their CutMix) the
                  teachers must see.
Providers get the run's TrainContext (training/context.py), never the trainer.
Frozen means eval mode (BN running statistics, no dropout) and requires_grad False: a teacher never learns.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.autoencoder import (
    FeatureAutoencoder,
    autoencoder_loss,
    freeze,
    load_autoencoder,
    save_autoencoder,
)
from slimseg_ros.training.checkpoint import load_checkpoint
from slimseg_ros.training.extras import ExtraProvider, register_extra
from slimseg_ros.training.slimmable import get_width, set_width
from slimseg_ros.training.steps import StepStrategy, WidthRunner, register_step

if TYPE_CHECKING:
    from slimseg_ros.training.context import TrainContext


class FrozenTeacher(nn.Module):
    """A slimmable network pinned to one width, in eval mode, without gradients; returns the aux dict."""

    def __init__(self, net: nn.Module, width: float | None = None) -> None:
        super().__init__()
        widths = list(net.cfg.widths)
        self.width = float(widths[-1] if width is None else width)
        if self.width not in widths:
            raise SlimsegError(f"teacher width {self.width} not in the teacher's widths {widths}")
        set_width(net, self.width)
        self.net = freeze(net)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stay in eval mode whatever the trainer does to its modules."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        set_width(self.net, self.width)
        return self.net(x, aux=True)


def load_teacher(path: str | Path, width: float | None = None) -> FrozenTeacher:
    """Frozen teacher from a checkpoint written by this trainer (widest width unless told otherwise)."""
    net, _meta = load_checkpoint(path)
    return FrozenTeacher(net, width)


def _resolve_teacher(spec: str, width: float | None, ctx: TrainContext) -> FrozenTeacher:
    """`self`: a frozen copy of the run's starting student; else a checkpoint, on the run's device."""
    if spec == "self":
        return FrozenTeacher(copy.deepcopy(ctx.student()), width).to(ctx.device)
    return load_teacher(spec, width).to(ctx.device)


@register_extra("ka")
class KAProvider(ExtraProvider):
    """Teacher code E(phi_t) for the ka_adapt / ka_affinity terms (teacher and autoencoder both frozen)."""

    def __init__(self, teacher: str, autoencoder: str, width: float | None = None) -> None:
        self.teacher_spec, self.width, self.ae_path = str(teacher), width, Path(autoencoder)
        self.teacher: FrozenTeacher | None = None
        self.ae: FeatureAutoencoder | None = None
        self.autocast: Any = nullcontext

    def prepare(self, ctx: TrainContext) -> None:
        """Load the teacher and its autoencoder; check that the code fits the teacher's features."""
        self.teacher = _resolve_teacher(self.teacher_spec, self.width, ctx)
        ae, _ = load_autoencoder(self.ae_path)
        feat_ch = channels_at(self.teacher.net, self.teacher.width)
        if ae.in_channels != feat_ch:
            raise SlimsegError(
                f"autoencoder {self.ae_path} expects {ae.in_channels} feature channels, teacher "
                f"{self.teacher_spec} has {feat_ch}",
                "train the autoencoder on this teacher",
            )
        self.ae = freeze(ae.to(ctx.device))
        check_adapters(ctx, ae)
        self.autocast = ctx.autocast  # the run's mixed precision (CUDA only)

    @torch.no_grad()
    def compute(self, images: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        if self.teacher is None or self.ae is None:
            raise SlimsegError("ka extras used before prepare()")
        with self.autocast():  # the trainer's mixed precision: a frozen forward need not run in fp32
            return {"ka_code": self.ae.encode(self.teacher(images)["feat"])}


def check_adapters(ctx: TrainContext, ae: FeatureAutoencoder) -> None:
    """Fail at start-up, not mid-run, when the ka_* terms do not fit the student or the autoencoder."""
    terms = [(n, t) for n, t in zip(ctx.loss.names, ctx.loss.terms, strict=True) if hasattr(t, "adapters")]
    if not terms:
        raise SlimsegError(
            "the ka extras feed no loss term", "add ka_adapt / ka_affinity terms to loss.terms"
        )
    student = ctx.student()
    full = channels_at(student, max(student.cfg.widths))
    for name, term in terms:
        for key, adapter in term.adapters.items():
            conv = adapter.conv
            if (
                conv.in_channels != full
                or conv.out_channels != ae.code_channels
                or conv.stride[0] != ae.stride
            ):
                raise SlimsegError(
                    f"loss term {name} ({key}): adapter {conv.in_channels}->{conv.out_channels} stride "
                    f"{conv.stride[0]}, but the student's decoder has {full} channels and the autoencoder "
                    f"code {ae.code_channels} channels at stride {ae.stride}",
                    "set student_channels, code_channels and stride of the ka_* terms to match",
                )


def channels_at(net: nn.Module, width: float) -> int:
    """Decoder feature channels of a slimmable network at `width` (one tiny forward, no gradients)."""
    was = get_width(net)
    set_width(net, width)
    training = net.training
    net.eval()
    with torch.no_grad():
        p = next(net.parameters())
        c = int(net(torch.zeros(1, 3, 64, 64, device=p.device, dtype=p.dtype), aux=True)["feat"].shape[1])
    net.train(training)
    set_width(net, was)
    return c


# ---- the KA autoencoder stage: `slimseg train --config training/configs/ka_autoencoder.yaml` -------------
@register_extra("ka_autoencoder")
class KAAutoencoderStage(ExtraProvider):
    """Trains the feature autoencoder on the frozen teacher's features (the `ka_autoencoder` method).

    The autoencoder's parameters go to the trainer's optimizer through `parameters()`. Every time the trainer
    checkpoints (`state_dict()`, main process, every train.ckpt_every steps and at the end) the current
    autoencoder is also written to `<out>/<name>.safetensors`, the file the `ka` provider loads.
    """

    def __init__(
        self,
        teacher: str,
        width: float | None = None,
        code_channels: int = 64,
        hidden_channels: int | None = None,
        strides: tuple[int, ...] = (1, 2, 1),
        alpha: float = 1e-7,
        name: str = "ka_autoencoder",
    ) -> None:
        self.teacher_spec, self.width, self.alpha, self.name = str(teacher), width, float(alpha), name
        self.ae_args = {
            "code_channels": int(code_channels),
            "hidden_channels": hidden_channels,
            "strides": tuple(strides),
        }
        self.teacher: FrozenTeacher | None = None
        self.ae: FeatureAutoencoder | None = None
        self.out: Path | None = None

    def prepare(self, ctx: TrainContext) -> None:
        if ctx.dist.distributed:
            raise SlimsegError("the KA autoencoder stage runs in one process", "run it without torchrun")
        self.teacher = _resolve_teacher(self.teacher_spec, self.width, ctx)
        feat_ch = channels_at(self.teacher.net, self.teacher.width)
        self.ae = FeatureAutoencoder(feat_ch, **self.ae_args).to(ctx.device).train()
        self.out = ctx.out_dir / self.name

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        if self.ae is None:
            raise SlimsegError("ka_autoencoder extras used before prepare()")
        return iter(self.ae.parameters())

    def compute(self, images: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        if self.teacher is None or self.ae is None:
            raise SlimsegError("ka_autoencoder extras used before prepare()")
        feat = self.teacher(images)["feat"]
        recon, code = self.ae(feat)
        return {"ka_ae_loss": autoencoder_loss(feat, recon, code, self.alpha)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Autoencoder weights for --resume; also (re)writes the standalone autoencoder file."""
        if self.ae is None or self.out is None:
            return {}
        save_autoencoder(copy.deepcopy(self.ae).cpu().eval(), self.out, {"teacher": self.teacher_spec})
        return dict(self.ae.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.ae is not None and state:
            self.ae.load_state_dict(state)


@register_step("ka_autoencoder")
class KAAutoencoderStep(StepStrategy):
    """Optimises only the autoencoder (loss from the `ka_autoencoder` extras). The runner holds the frozen
    teacher, so the run's `final` checkpoint and validation are the teacher's own (a sanity check)."""

    default_terms: list[dict[str, Any]] = []

    def build_runner(self) -> WidthRunner:
        specs = [e for e in self.cfg.extras if e.get("name") == "ka_autoencoder"]
        if len(specs) != 1:
            raise SlimsegError("method ka_autoencoder needs exactly one `ka_autoencoder` extras entry")
        net, _ = load_checkpoint(specs[0]["teacher"])
        freeze(net)
        # The runner is the trained teacher: the trainer must not re-initialise it (ImageNet weights over a
        # trained encoder would silently wreck the features the autoencoder learns).
        self.model_cfg = dataclasses.replace(net.cfg, pretrained=None)
        return WidthRunner({w: net for w in net.cfg.widths}, shared=True)

    def compute(self, runner: nn.Module, batch: dict[str, Any], unlabeled: dict[str, Any] | None,
                extra: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = extra.get("ka_ae_loss")
        if loss is None:
            raise SlimsegError("method ka_autoencoder needs the `ka_autoencoder` extras provider")
        return loss, {"loss": float(loss.detach()), "ka_ae": float(loss.detach())}


@register_extra("mgd")
class MGDProvider(ExtraProvider):
    """The frozen MGD teachers, by name (wide, deep); the `mgd` step strategy takes the provider in `bind`."""

    def __init__(self, teachers: dict[str, str], width: float | None = None) -> None:
        if not teachers:
            raise SlimsegError("mgd extras need teachers", "e.g. teachers: {wide: runs/t_wide/final, ...}")
        self.paths = {str(k): str(v) for k, v in teachers.items()}
        self.width = width
        self.nets: dict[str, FrozenTeacher] = {}

    def prepare(self, ctx: TrainContext) -> None:
        """Load and freeze every teacher on the run's device."""
        self.nets = {name: _resolve_teacher(p, self.width, ctx) for name, p in self.paths.items()}

    def run(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Every teacher's aux outputs on `images` (no gradients)."""
        if not self.nets:
            raise SlimsegError("mgd extras used before prepare()")
        return {name: net(images) for name, net in self.nets.items()}
