"""The typed training configuration: one frozen dataclass per YAML section, defaults stated once, here.

A YAML file (training/config.py reads it, merges its `base:` chain and applies `--set` overrides) only says
what differs from these defaults. `RunConfig.from_dict` types it: values are converted to the declared types
(so `--set optim.lr=1e-3`, which YAML reads as text, is a float), and an unknown key is an error that names
the key, its section, the nearest known key and all known keys (a typo would otherwise train the default).
`to_dict` gives back the complete plain mapping saved with runs and checkpoints.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import types
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.model import ModelConfig

AMP_MODES = ("bf16", "fp16", "none")  # mixed precision on CUDA; `none` (or null) runs in fp32
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class UnlabeledConfig:
    """The unlabelled image stream of semi-supervised steps (`data.unlabeled`)."""

    folders: tuple[str, ...] = ()  # image folders, every image file in them
    batch_size: int | None = None  # None: train.batch_size


@dataclass(frozen=True)
class PartitionConfig:
    """Keep the labels of a seeded share of the training frames (`data.partition`; training/partition.py).

    The other frames join the unlabelled stream, if there is one; the lists are saved in the run folder."""

    fraction: str | float  # 1/16, 1/8, 1/4 or 1/2
    seed: int = 0

    def __post_init__(self) -> None:
        from slimseg_ros.training.partition import parse_fraction

        parse_fraction(self.fraction)


@dataclass(frozen=True)
class DataConfig:
    """What the loaders read and how they augment it (`data:`)."""

    train_splits: tuple[str, ...] = ("train",)  # joined in order, e.g. [train, val] for the standard protocol
    val_split: str | None = "val"  # periodic evaluation split (null: no evaluation during training)
    ignore_index: int = 11  # void label: excluded from losses and metrics
    classes_file: str | None = "classes.json"  # names/colours, relative to --data (optional)
    crop: tuple[int, ...] = (352, 352)  # training crop (H, W); smaller images: padded with ignore
    scale: tuple[float, ...] = (0.75, 1.75)  # random rescale range relative to the stored image size
    flip: bool = True  # random horizontal flip
    photometric: bool = True  # colour jitter (brightness/contrast/saturation/hue)
    eval_size: tuple[int, ...] | None = None  # (H, W) the network sees at evaluation; None = stored size
    mean: tuple[float, ...] = (123.675, 116.28, 103.53)  # RGB normalisation, 0-255 (saved in checkpoints)
    std: tuple[float, ...] = (58.395, 57.12, 57.375)
    num_workers: int = 2  # DataLoader workers per process
    limit: int | None = None  # use only the first N training frames (smoke tests)
    val_limit: int | None = None  # use only the first N validation frames
    unlabeled: UnlabeledConfig | None = None  # unlabelled stream for semi-supervised steps
    partition: PartitionConfig | None = None  # train on a seeded share of the labels

    def __post_init__(self) -> None:
        if len(self.crop) != 2 or min(self.crop) < 8:
            raise SlimsegError(f"data.crop must be [H, W] >= 8, got {list(self.crop)}")


def _cutmix_keys() -> list[str]:
    """The keywords of training/cutmix.py box_masks that a config may set (its defaults are the defaults)."""
    from slimseg_ros.training.cutmix import box_masks

    return [n for n in inspect.signature(box_masks).parameters
            if n not in ("n", "height", "width", "generator", "device")]


@dataclass(frozen=True)
class LossConfig:
    """The loss terms of the run and the knobs of the semi-supervised steps (`loss:`)."""

    # None: the method's default terms (training/steps.py); a method name: that method's defaults; else a list
    terms: str | tuple[dict[str, Any], ...] | None = None
    add_terms: tuple[dict[str, Any], ...] = ()  # appended to `terms` (e.g. KA's or MGD's terms on SlimSeg's)
    boundary_kernel: int = 3  # k of the k x k ground-truth boundary rule
    cutmix: dict[str, Any] = field(default_factory=dict)  # box_masks keywords (training/cutmix.py)
    ema: float | None = None  # method mgd_teacher: mean-teacher decay of the pseudo-label network

    def __post_init__(self) -> None:
        if isinstance(self.terms, list):
            object.__setattr__(self, "terms", tuple(self.terms))
        check_keys(self.cutmix, _cutmix_keys(), "loss.cutmix")
        if self.ema is not None and not 0.0 <= self.ema < 1.0:
            raise SlimsegError(f"loss.ema must be in [0, 1), got {self.ema}",
                               "e.g. 0.99, or null for no average")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule (`optim:`)."""

    name: str = "adamw"  # adamw | sgd
    lr: float = 2.0e-3
    weight_decay: float = 1.0e-4  # not applied to BN parameters and biases
    momentum: float = 0.9  # sgd only
    poly_power: float = 0.9  # lr = lr0 * (1 - step / steps) ** power
    warmup_steps: int = 0  # linear warm-up before the poly decay

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise SlimsegError(f"optim.name must be adamw or sgd, got {self.name!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The loop: budget, batch, precision, schedules of checkpoints and evaluation (`train:`)."""

    steps: int = 3000  # optimizer steps; the same budget for every method
    batch_size: int = 16  # per process
    amp: str | None = "bf16"  # bf16 | fp16 | none: mixed precision, used on CUDA only
    seed: int = 0
    ckpt_every: int | None = 500  # save last checkpoint + training state every N steps (0/null: at the end)
    val_every: int | None = 500  # evaluate on data.val_split every N steps (0/null: only at the end)
    log_every: int = 20  # progress-bar refresh of the running loss
    sync_bn: str | bool = "auto"  # auto: SyncBatchNorm under DDP on CUDA, per-process BN otherwise
    threads: int | None = None  # torch.set_num_threads on CPU (None: leave torch's default)
    stop_after: int | None = None  # stop with a resumable state after this many steps (time-sliced CPU runs)
    init: str | None = None  # start from this checkpoint's weights (same model config), not model.pretrained
    boundary_px: int = 3  # trimap band for the boundary mIoU of periodic evaluation

    def __post_init__(self) -> None:
        if self.amp not in (*AMP_MODES, None):
            raise SlimsegError(f"train.amp must be bf16, fp16 or none, got {self.amp!r}")
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise SlimsegError(f"train.{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: the method, the model and one typed object per section."""

    method: str = "slimseg"  # step strategy: a name registered in training/steps.py STEPS
    imports: tuple[str, ...] = ()  # third-party modules imported first (they register losses, steps, extras)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    extras: tuple[dict[str, Any], ...] = ()  # extras providers (training/extras.py): {name: ..., args}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Type a merged config mapping; its plug-in modules are imported first (they may register an encoder,
        a loss term or the method itself), and the method must exist."""
        for name in _coerce("imports", d.get("imports") or [], tuple[str, ...]):
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise SlimsegError(f"config imports {name!r}, which cannot be imported: {exc}") from exc
        cfg = section_from_dict(cls, d, "top level")
        from slimseg_ros.training.steps import STEPS

        if cfg.method not in STEPS:
            raise SlimsegError(f"unknown method {cfg.method!r}", f"known: {', '.join(STEPS.names())}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The complete plain mapping (lists, not tuples): what config.yaml and checkpoints record."""
        return _plain(self)


def section_from_dict(cls: type, data: Any, section: str) -> Any:
    """Dataclass `cls` from one config mapping; an unknown key fails naming its section and the known keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SlimsegError(f"config section {section} must be a mapping, got {data!r}")
    check_keys(data, [f.name for f in fields(cls)], section)
    missing = [f.name for f in fields(cls)
               if f.default is MISSING and f.default_factory is MISSING and f.name not in data]
    if missing:
        raise SlimsegError(f"config section {section} must set {', '.join(missing)}, got {data}")
    hints = get_type_hints(cls)
    prefix = "" if section == "top level" else f"{section}."
    kwargs = {k: _coerce(f"{prefix}{k}", v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def check_keys(data: dict[str, Any], known: list[str], section: str) -> None:
    """Fail on the first key not in `known`, naming it, its section, the nearest known key and all of them."""
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            hint += f"known {section} keys: {', '.join(known)}"
            where = "config section" if section == "top level" else f"key in config section {section}:"
            raise SlimsegError(f"unknown {where} {key!r}", hint)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """`value` as the declared type: numbers from YAML text, tuples from lists, sections from mappings."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(key, value, options[0])
        return tuple(value) if isinstance(value, list) else value  # e.g. loss.terms: a method name or a list
    if is_dataclass(hint):
        return value if isinstance(value, hint) else section_from_dict(hint, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SlimsegError(f"{key} must be a list, got {value!r}")
        item = args[0]
        return tuple(_coerce(key, v, item) if item in (int, float, str) else v for v in value)
    if hint in (int, float):
        try:
            return hint(value) if not isinstance(value, bool) else _bad(key, value, hint)
        except (TypeError, ValueError):
            return _bad(key, value, hint)
    if hint is bool and not isinstance(value, bool):
        return _bad(key, value, hint)
    if hint is str:
        return str(value)
    return value


def _bad(key: str, value: Any, hint: type) -> Any:
    raise SlimsegError(f"{key} must be {hint.__name__}, got {value!r}")


def _plain(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively (YAML/JSON-safe)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
