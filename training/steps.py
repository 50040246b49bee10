"""Step strategies: what one training step computes, one class per training method, chosen by `method`.

The trainer owns the loop (data, backward, optimizer, AMP, DDP, checkpoints); a strategy owns the forward
pass and the loss of one step. Every width runs on the same batch, widest to narrowest, inside ONE forward
of a `WidthRunner` (so DistributedDataParallel sees one forward and one backward per step), and the
per-width losses are summed: one backward then accumulates every width's gradient before the single
optimizer step, exactly as per-width backward passes would (teachers are detached).

Methods registered here:
  slimseg      stepwise downward KD (w_(n+1) teaches w_n) + boundary head BCE + boundary-guided loss
  no_boundary  slimseg without the boundary terms
  inplace      every narrower width distilled from the widest (US-Nets), no boundary terms
  independent  one separate network per width, each trained on the labels alone (the baseline)
Built-in methods elsewhere: mgd and mgd_teacher (training/semi.py), ka_autoencoder (training/teachers.py).
A third-party module registers more with `@register_step(name)` and is listed under the config's `imports:`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.losses import LossContext, WeightedLoss
from slimseg_ros.training.model import ModelConfig, SlimSegNet
from slimseg_ros.training.registry import Registry
from slimseg_ros.training.slimmable import set_width

if TYPE_CHECKING:
    from slimseg_ros.training.context import TrainContext
    from slimseg_ros.training.extras import ExtraProvider
    from slimseg_ros.training.run_config import RunConfig

# `method:` -> strategy class. The built-in methods outside this module (KA's autoencoder stage in
# teachers.py, MGD in semi.py) are imported on the first lookup: no config has to list them.
STEPS: Registry[type[StepStrategy]] = Registry(
    "step strategy", builtins=("slimseg_ros.training.semi", "slimseg_ros.training.teachers"))
register_step = STEPS.register


def wkey(width: float) -> str:
    """Width as a module/dict key ('0.25'); ModuleDict keys may not contain dots, so they are replaced."""
    return f"{width:g}"


class WidthRunner(nn.Module):
    """Runs the network(s) at several widths in one forward: {width: model(x, aux=True)}.

    Holds either one slimmable network (`shared=True`: every width is a slice of it, state keys `net.*`)
    or one network per width (independent baseline, state keys `nets.<width>.*`).
    """

    def __init__(self, nets: dict[float, SlimSegNet], shared: bool) -> None:
        super().__init__()
        self.shared = shared
        self.widths = sorted(nets)
        if shared:
            self.net_shared = next(iter(nets.values()))
        else:
            self.nets = nn.ModuleDict({wkey(w).replace(".", "_"): n for w, n in nets.items()})

    def net(self, width: float) -> SlimSegNet:
        """The network that runs `width` (already switched to it)."""
        net = self.net_shared if self.shared else self.nets[wkey(width).replace(".", "_")]
        set_width(net, width)
        return net

    def unique_nets(self) -> list[tuple[list[float], SlimSegNet]]:
        """(widths, network) pairs: one pair for a shared slimmable net, one per width otherwise."""
        if self.shared:
            return [(self.widths, self.net(self.widths[-1]))]
        return [([w], self.net(w)) for w in self.widths]

    def forward(self, x: torch.Tensor, widths: list[float] | None = None,
                aux: bool = True) -> dict[float, Any]:
        widths = sorted(widths or self.widths, reverse=True)  # widest first
        return {w: self.net(w)(x, aux=aux) for w in widths}


class StepStrategy:
    """One training method: builds the trainable runner and the loss, computes one step's total loss."""

    #: default loss terms for this method when the config's `loss.terms` is null
    default_terms: list[dict[str, Any]] = []
    #: whether the step needs ground-truth boundary maps in the batch (boundary_gt)
    needs_boundary = False

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.model_cfg = cfg.model
        self.ignore_index = cfg.data.ignore_index
        terms = self.term_specs(cfg)
        try:
            self.loss = WeightedLoss(terms)
        except (KeyError, ValueError, TypeError) as exc:  # unknown term, bad argument or value
            raise SlimsegError(f"loss.terms of method {cfg.method!r}: {exc}",
                               "see training/losses/ for the terms and their arguments") from exc
        self.needs_boundary = self.needs_boundary or any(
            t["name"].startswith("boundary") for t in terms)

    def term_specs(self, cfg: RunConfig) -> list[dict[str, Any]]:
        """The run's loss terms: `loss.terms` (a list; a method name for that method's defaults; null for
        this method's) followed by `loss.add_terms`, so an arm that adds KA or MGD terms to a method
        states only what it adds."""
        terms = cfg.loss.terms
        if terms is None:
            terms = self.default_terms
        elif isinstance(terms, str):
            if terms not in STEPS:
                raise SlimsegError(f"loss.terms names unknown method {terms!r}", f"known: {', '.join(STEPS)}")
            terms = STEPS.get(terms).default_terms
        return [*terms, *cfg.loss.add_terms]

    def bind(self, ctx: TrainContext, extras: Sequence[ExtraProvider]) -> None:
        """Called once the run is set up (student on the device, extras prepared): a strategy that needs a
        provider's networks (MGD's frozen teachers) takes them here, not through the per-batch extras."""

    def build_runner(self) -> WidthRunner:
        """The trainable module (DDP wraps it); default: one shared slimmable network."""
        net = SlimSegNet(self.model_cfg)
        return WidthRunner({w: net for w in self.model_cfg.widths}, shared=True)

    def teacher_of(self, width: float, widths: list[float]) -> float | None:
        """Width whose (detached) outputs teach `width`; None for the widest. Default: the next wider."""
        i = widths.index(width)
        return None if i == len(widths) - 1 else widths[i + 1]

    def compute(self, runner: nn.Module, batch: dict[str, Any], unlabeled: dict[str, Any] | None,
                extra: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward every width on the batch and return (summed loss, logs like {'w0.25/kd': ...})."""
        outs = runner(batch["image"])
        widths = sorted(outs)
        total = None
        logs: dict[str, float] = {}
        for w in sorted(widths, reverse=True):
            t = self.teacher_of(w, widths)
            ctx = LossContext(student=outs[w], target=batch["label"], width=w, is_widest=w == widths[-1],
                              teacher=None if t is None else {k: v.detach() for k, v in outs[t].items()},
                              boundary_gt=batch.get("boundary"), ignore_index=self.ignore_index, extra=extra)
            loss, parts = self.loss(ctx)
            total = loss if total is None else total + loss
            for k, v in parts.items():
                logs[f"w{w:g}/{k}"] = v
        logs["loss"] = float(total.detach())
        return total, logs


_CE = {"name": "ce", "weight": 1.0, "class_weights": "segnet_sqrt"}
_CE_NARROW = {"name": "ce", "weight": 0.5, "class_weights": "segnet_sqrt", "apply_to": "narrower"}
_KD = {"name": "kd", "weight": 1.0, "temperature": 1.0}
_BOUNDARY = [{"name": "boundary_bce", "weight": 1.0}, {"name": "boundary_guided", "weight": 0.5}]


@register_step("slimseg")
class SlimSegStep(StepStrategy):
    """SlimSeg: widest from labels, w_n from w_(n+1) (detached), boundary head and boundary-guided loss."""

    default_terms = [{**_CE, "apply_to": "widest"}, _CE_NARROW, _KD, *_BOUNDARY]


@register_step("no_boundary")
class NoBoundaryStep(StepStrategy):
    """Ablation: SlimSeg's stepwise distillation without any boundary term."""

    default_terms = [{**_CE, "apply_to": "widest"}, _CE_NARROW, _KD]


@register_step("inplace")
class InplaceStep(StepStrategy):
    """US-Nets inplace distillation: every narrower width learns from the widest."""

    default_terms = [{**_CE, "apply_to": "widest"}, _CE_NARROW, _KD]

    def teacher_of(self, width: float, widths: list[float]) -> float | None:
        return None if width == widths[-1] else widths[-1]


@register_step("independent")
class IndependentStep(StepStrategy):
    """Baseline: a separate network per width (ModelConfig widths=[w]), each from labels only.

    Each network sees the same batches and the same number of steps as the slimmable model, so the budget
    per width is equal. One optimizer updates all of them; AdamW/SGD are per-parameter, so this equals
    separate optimizers with the same schedule.
    """

    default_terms = [_CE]

    def build_runner(self) -> WidthRunner:
        nets = {}
        for w in self.model_cfg.widths:
            cfg = ModelConfig.from_dict({**self.model_cfg.to_dict(), "widths": [w]})
            nets[w] = SlimSegNet(cfg)
        return WidthRunner(nets, shared=False)

    def teacher_of(self, width: float, widths: list[float]) -> float | None:
        return None

    def compute(self, runner: nn.Module, batch: dict[str, Any], unlabeled: dict[str, Any] | None,
                extra: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        outs = runner(batch["image"])
        total = None
        logs: dict[str, float] = {}
        for w, out in outs.items():
            ctx = LossContext(student=out, target=batch["label"], width=w, is_widest=True,
                              boundary_gt=batch.get("boundary"), ignore_index=self.ignore_index, extra=extra)
            loss, parts = self.loss(ctx)
            total = loss if total is None else total + loss
            logs.update({f"w{w:g}/{k}": v for k, v in parts.items()})
        logs["loss"] = float(total.detach())
        return total, logs
