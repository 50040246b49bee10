"""Where a run's weights start: a trained checkpoint (`train.init`) or the model's pretrained encoder.

Starting from a checkpoint serves fine-tuning (another resolution, fewer labels) and Knowledge Adaptation's
`teacher: self`, whose frozen copy of the starting weights is only a teacher when those weights are trained.
The checkpoint must describe the same network as the run's model config: loading a ResNet into a Lite0 run, or
a 4-width model into a 2-width one, would otherwise fail deep in load_state_dict or, worse, half-load.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.checkpoint import load_checkpoint
from slimseg_ros.training.model import ModelConfig
from slimseg_ros.training.pretrained import init_pretrained
from slimseg_ros.training.steps import WidthRunner

# Fields that may differ between the checkpoint and the run (how the encoder was initialised is moot once
# every weight comes from the checkpoint).
_FREE_FIELDS = {"pretrained"}


def init_from_checkpoint(runner: WidthRunner, model_cfg: ModelConfig, path: str | Path) -> None:
    """Copy every weight and BN statistic of the checkpoint into each network of `runner`."""
    source, _meta = load_checkpoint(path)
    want, have = asdict(model_cfg), asdict(source.cfg)
    diff = sorted(k for k in want if k not in _FREE_FIELDS and want[k] != have.get(k))
    if diff:
        detail = ", ".join(f"{k}: run {want[k]!r} vs checkpoint {have.get(k)!r}" for k in diff)
        raise SlimsegError(f"train.init {path} is a different network ({detail})",
                           "set the run's model block to the checkpoint's (see its .json)")
    state = source.state_dict()
    for _widths, net in runner.unique_nets():
        net.load_state_dict(state)


def initialise(runner: WidthRunner, model_cfg: ModelConfig, init: str | Path | None) -> None:
    """A fresh run's starting weights: `train.init` if given, else `model.pretrained` (or random)."""
    if init:
        init_from_checkpoint(runner, model_cfg, init)
    else:
        init_pretrained(runner, model_cfg.arch, model_cfg.pretrained)

