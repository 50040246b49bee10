"""Extras providers: frozen helper networks and trainable adapters that feed loss terms.

Knowledge Adaptation needs a frozen teacher + autoencoder, MGD needs two frozen teachers; their loss terms
read the results from `LossContext.extra`. A provider is named in config and built here:

    extras:
      - {name: ka_teacher, checkpoint: runs/teacher/final, autoencoder: runs/ae/final}

Life cycle, driven by the trainer:
  1. `prepare(ctx)` once, after the model is built and before the optimizer: load frozen networks, move
     them to `ctx.device`, put them in eval mode. `ctx` is the run's TrainContext (training/context.py):
     device, student, loss terms, amp, run folder, data root, dist info and the typed config.
  2. `parameters()`: trainable tensors (adapters) the optimizer should update with the model.
  3. every step, `compute(images, batch) -> dict`: merged into `LossContext.extra` for every width
     (run under torch.no_grad() yourself for frozen parts; keys must be unique across providers).
Register with `@register_extra("name")`; YAML keys other than `name` are constructor arguments. The built-in
providers (teachers.py, semi.py) are always registered; a third-party module defining one is listed under
the config's `imports:`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from slimseg_ros.training.registry import Registry

if TYPE_CHECKING:
    from slimseg_ros.training.context import TrainContext


class ExtraProvider:
    """Base class: does nothing by default, so a provider overrides only what it needs."""

    def prepare(self, ctx: TrainContext) -> None:
        """Load and freeze helper networks; the student and the loss terms are on `ctx.device`."""

    def compute(self, images: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        """Values for `LossContext.extra` on this batch (images already on the device, normalised)."""
        return {}

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """Trainable parameters added to the optimizer (adapters); none by default."""
        return iter(())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable state saved with training checkpoints (for --resume); empty by default."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict` returned."""


EXTRAS: Registry[type[ExtraProvider]] = Registry(
    "extras provider", builtins=("slimseg_ros.training.teachers", "slimseg_ros.training.semi"))
register_extra = EXTRAS.register


def build_extras(specs: Iterable[dict[str, Any]] | None) -> list[ExtraProvider]:
    """Build the providers listed in config; unknown names fail with the known ones."""
    out = []
    for spec in specs or []:
        spec = dict(spec)
        name = spec.pop("name", None)
        out.append(EXTRAS.get(name)(**spec))
    return out


def compute_extras(providers: Iterable[ExtraProvider], images: torch.Tensor,
                   batch: dict[str, Any]) -> dict[str, Any]:
    """Merge every provider's outputs for one batch; a key produced twice is a configuration error."""
    merged: dict[str, Any] = {}
    for p in providers:
        values = p.compute(images, batch)
        clash = set(values) & set(merged)
        if clash:
            raise KeyError(f"extras key(s) {sorted(clash)} produced by two providers")
        merged.update(values)
    return merged
