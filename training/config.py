"""Training configuration: YAML merged over commented defaults, with `key.path=value` overrides.

Defaults live here once; a config file only states what differs. A file may name a `base:` config (a path
relative to itself) that it is merged over, so the arms of one protocol share its data/optim/train blocks
instead of copying them. Unknown top-level sections are an error (typos would otherwise silently train the
default).
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.errors import SlimsegError

DEFAULTS: dict[str, Any] = {
    "method": "slimseg",  # step strategy: slimseg | inplace | no_boundary | independent (| mgd, via imports)
    "imports": [],  # modules imported first: they register extra losses, extras providers, step strategies
    "model": {"arch": "resnet18", "num_classes": 11, "widths": [0.25, 0.5, 0.75, 1.0]},  # ModelConfig keys
    "data": {
        "train_splits": ["train"],  # joined in order, e.g. [train, val] for the standard protocol
        "val_split": "val",  # periodic evaluation split (null: no evaluation during training)
        "ignore_index": 11,  # void label: excluded from losses and metrics
        "classes_file": "classes.json",  # names/colours, relative to --data (optional)
        "crop": [352, 352],  # training crop (H, W); smaller images are padded with the ignore label
        "scale": [0.75, 1.75],  # random rescale range relative to the stored image size
        "flip": True,  # random horizontal flip
        "photometric": True,  # colour jitter (brightness/contrast/saturation/hue)
        "eval_size": None,  # (H, W) the network sees at evaluation; None = stored size
        "mean": [123.675, 116.28, 103.53],  # RGB normalisation on the 0-255 scale (saved in checkpoints)
        "std": [58.395, 57.12, 57.375],
        "num_workers": 2,  # DataLoader workers per process
        "limit": None,  # use only the first N training frames (smoke tests)
        "val_limit": None,  # use only the first N validation frames
        "unlabeled": None,  # {folders: [...], batch_size: N}: unlabelled stream for semi-supervised steps
        # {fraction: 1/8, seed: 0}: keep the labels of a seeded share of the training frames (the rest join
        # the unlabelled stream, if there is one); lists saved in the run folder (training/partition.py)
        "partition": None,
    },
    "loss": {
        "terms": None,  # None = the method's default terms (see training/steps.py); a method name = its
        # defaults; else a list of terms
        "add_terms": [],  # appended to `terms` (e.g. KA's or MGD's terms on top of SlimSeg's)
        "boundary_kernel": 3,  # k of the k x k ground-truth boundary rule
    },
    "optim": {
        "name": "adamw",  # adamw | sgd
        "lr": 2.0e-3,
        "weight_decay": 1.0e-4,  # not applied to BN parameters and biases
        "momentum": 0.9,  # sgd only
        "poly_power": 0.9,  # lr = lr0 * (1 - step / steps) ** power
        "warmup_steps": 0,  # linear warm-up before the poly decay
    },
    "train": {
        "steps": 3000,  # optimizer steps; the same budget for every method
        "batch_size": 16,  # per process
        "amp": "bf16",  # bf16 | fp16 | none: mixed precision, used on CUDA only
        "seed": 0,
        "ckpt_every": 500,  # save last checkpoint + training state every N steps
        "val_every": 500,  # evaluate on data.val_split every N steps (0 = only at the end)
        "log_every": 20,  # progress-bar refresh of the running loss
        "sync_bn": "auto",  # auto: SyncBatchNorm under DDP on CUDA, per-process BN otherwise
        "threads": None,  # torch.set_num_threads on CPU (None: leave torch's default)
        "stop_after": None,  # stop with a resumable state after this many steps (time-sliced CPU runs)
        "init": None,  # start from this checkpoint's weights (same model config) instead of model.pretrained
        "boundary_px": 3,  # trimap band for the boundary mIoU of periodic evaluation
    },
    "extras": [],  # extras providers (training/extras.py)
}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "unlabeled":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_override(cfg: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in override:
        raise SlimsegError(f"override {override!r} is not key=value", "e.g. --set train.steps=100")
    key, raw = override.split("=", 1)
    node = cfg
    parts = key.strip().split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = yaml.safe_load(raw)


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One config file merged over its `base:` chain (each base path relative to the file naming it)."""
    p = Path(path)
    if not p.is_file():
        raise SlimsegError(f"config file not found: {p}", "see training/configs/ for examples")
    if p.resolve() in _seen:
        raise SlimsegError(f"config {p} is its own base", " -> ".join(str(s) for s in (*_seen, p.resolve())))
    try:
        user = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SlimsegError(f"config {p} is not valid YAML: {exc}") from exc
    if not isinstance(user, dict):
        raise SlimsegError(f"config {p} must be a mapping at the top level")
    base = user.pop("base", None)
    if base is None:
        return user
    return deep_merge(read_config_file(p.parent / str(base), (*_seen, p.resolve())), user)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a YAML config (and its bases) over the defaults, apply overrides and import plugin modules."""
    user = read_config_file(path) if path is not None else {}
    cfg = deep_merge(DEFAULTS, user)
    for o in overrides or []:
        apply_override(cfg, o)
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise SlimsegError(f"unknown config section(s): {', '.join(unknown)}",
                           f"known: {', '.join(DEFAULTS)}")
    for name in cfg["imports"] or []:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SlimsegError(f"config imports {name!r}, which cannot be imported: {exc}") from exc
    validate(cfg)
    return cfg


def validate(cfg: dict[str, Any]) -> None:
    """Cheap sanity checks that would otherwise fail deep inside the training loop."""
    from slimseg_ros.training.steps import STEPS

    if cfg["method"] not in STEPS:
        raise SlimsegError(f"unknown method {cfg['method']!r}", f"known: {', '.join(sorted(STEPS))}")
    if cfg["optim"]["name"] not in ("adamw", "sgd"):
        raise SlimsegError(f"optim.name must be adamw or sgd, got {cfg['optim']['name']!r}")
    if cfg["train"]["amp"] not in ("bf16", "fp16", "none", None):
        raise SlimsegError(f"train.amp must be bf16, fp16 or none, got {cfg['train']['amp']!r}")
    for key in ("steps", "batch_size"):
        if int(cfg["train"][key]) < 1:
            raise SlimsegError(f"train.{key} must be >= 1, got {cfg['train'][key]}")
    part = cfg["data"].get("partition")
    if part is not None:
        from slimseg_ros.training.partition import parse_fraction

        if not isinstance(part, dict) or "fraction" not in part or set(part) - {"fraction", "seed"}:
            raise SlimsegError(f"data.partition must be {{fraction: 1/8, seed: 0}}, got {part!r}",
                               "e.g. --set data.partition.fraction=1/8")
        parse_fraction(part["fraction"])
    crop = cfg["data"]["crop"]
    if not (isinstance(crop, list | tuple) and len(crop) == 2 and min(crop) >= 8):
        raise SlimsegError(f"data.crop must be [H, W] >= 8, got {crop}")
